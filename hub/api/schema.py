"""Assembles the GraphQL schema from the per-domain Query, Mutation and Subscription types."""

from __future__ import annotations

from strawberry import Schema
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from hub.api.errors import ShapeErrors
from hub.api.mutations import Mutation
from hub.api.queries import Query
from hub.api.subscriptions import Subscription
from hub.api.types.events import EventType
from hub.api.types.feedback import FeedbackType
from hub.api.types.notices import NoticeType
from hub.api.types.org import DepartmentType, GridType, MemberType
from hub.api.types.residents import ResidentType
from hub.config import Limits

NODE_TYPES = [
    GridType,
    DepartmentType,
    MemberType,
    ResidentType,
    EventType,
    NoticeType,
    FeedbackType,
]


def build_schema(limits: Limits | None = None) -> Schema:
    limits = limits or Limits()
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=NODE_TYPES,
        extensions=[
            # Factories: a fresh extension per request. The parse and validation LRU caches
            # live at module level, so they are shared across requests all the same.
            ShapeErrors,
            lambda: ParserCache(maxsize=512),
            lambda: ValidationCache(maxsize=512),
        ],
        config=StrawberryConfig(
            disable_field_suggestions=True,
            batching_config={"max_operations": limits.max_batch_operations},
        ),
    )
