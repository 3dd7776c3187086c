"""The per-request context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strawberry.types import Info as StrawberryInfo

from hub.authz import Access
from hub.config import Settings
from hub.db import Database
from hub.events.changes import Broker

if TYPE_CHECKING:
    from hub.api.loaders import Loaders


@dataclass(slots=True)
class Context:
    db: Database
    settings: Settings
    access: Access
    broker: Broker
    loaders: Loaders
    request: Any = None
    response: Any = None
    # Filled by the limits extension: the operation's estimated cost, for logs and tests.
    cost: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


Info = StrawberryInfo[Context, None]
