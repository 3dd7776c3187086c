"""Assembles the GraphQL schema from the per-domain Query, Mutation and Subscription types."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from graphql import GraphQLError
from strawberry import Schema
from strawberry.extensions import SchemaExtension, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from hub.api import scalars
from hub.api.access import AccessMutation, AccessQuery
from hub.api.audit import AuditTrail
from hub.api.compiled import execution as compiled
from hub.api.compiled.stats import CompiledExecutionQuery
from hub.api.context import Context
from hub.api.errors import ShapeErrors
from hub.api.guards import RejectUnstorableText, RequireOperationName
from hub.api.limits import GraphQLLimits
from hub.api.mutations import Mutation
from hub.api.queries import Query
from hub.api.ratelimit import PublicWriteLimit
from hub.api.registrations import RegistrationMutation, RegistrationQuery
from hub.api.subscriptions import Subscription
from hub.api.sync import SyncMutation, SyncQuery
from hub.api.types.access import EmergencyGrantType
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
    EmergencyGrantType,
]

# The per-domain roots and access control's, as the one Query and Mutation of the full schema
# (each role's schema is cut from it: hub.api.roles).
FullQuery = merge_types(
    "Query", (Query, AccessQuery, SyncQuery, CompiledExecutionQuery, RegistrationQuery)
)
FullMutation = merge_types(
    "Mutation", (Mutation, AccessMutation, SyncMutation, RegistrationMutation)
)


class GridHubSchema(Schema):
    def _get_execute_function(self) -> Callable[..., Any]:
        """Compiled execution where it applies, graphql-core's executor elsewhere (hub.api
        .compiled.execution): called inside every extension's on_execute, like graphql-core."""
        return compiled.execute

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Log nothing here. strawberry logs every error by default, and an expected error may
        quote the input that caused it (an ID number, a phone): personal data has no place in
        logs. hub.api.errors logs unexpected errors, with their correlation id and stack."""


class PerOperationContext(SchemaExtension):
    """Every operation runs on its own copy of the request's Context, with fresh DataLoaders
    (cleared again after each commit): a WebSocket connection keeps one Context for hours, and
    a cached row must not outlive the operation that read it.

    strawberry hands `execution_context.context` to graphql-core when execution starts (for
    queries, mutations and subscriptions alike), after `on_operation` has begun."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        if isinstance(context.context, Context):
            context.context = context.context.for_operation()
        yield


@lru_cache(maxsize=8)
def build_schema(limits: Limits | None = None) -> Schema:
    """The full schema (every role's schema is cut from it). Cached per Limits: apps and tools
    in one process share it, and the role schemas compiled from it (hub.api.registry)."""
    limits = limits or Limits()
    # One per schema: it holds the validation rule class and the parse and cost caches.
    guard = GraphQLLimits(limits)
    return GridHubSchema(
        query=FullQuery,
        mutation=FullMutation,
        subscription=Subscription,
        types=NODE_TYPES,
        extensions=[
            # Factories: a fresh extension per request. The parse and validation LRU caches
            # live in `guard` and at module level, so they are shared across requests.
            PerOperationContext,
            ShapeErrors,
            RequireOperationName,
            RejectUnstorableText,
            # Parses through its own cache (with the length and token limits), adds the
            # depth/alias/cost rule, and bounds execution (batch budget, timeout).
            guard.extension,
            lambda: ValidationCache(maxsize=512),
            # Valid operations only, and before the audit trail: a refused anonymous write
            # costs one counter statement, not an audit record.
            PublicWriteLimit,
            # After the limits: purpose for sensitive fields, and the access log.
            AuditTrail,
        ],
        # DateTime refuses times no column can hold (hub.api.scalars).
        scalar_overrides=scalars.OVERRIDES,
        config=StrawberryConfig(
            disable_field_suggestions=True,
            batching_config={"max_operations": limits.max_batch_operations},
        ),
    )
