"""What a compiled plan is: for each root field of a query, what to select and how each
response dict is built from the rows (hub.api.compiled.compiler makes plans, ...run runs
them). Plans hold no request's data: one serves every request of its shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import DocumentNode, FieldNode, GraphQLField
from strawberry.types.field import StrawberryField

TYPENAME = "__typename"

# The unique column every row plan carries: relations key on it, and the access log names it.
ID = "id"
# The column that tells whether an emergency grant unmasks a row (Access.unmasks).
GRID_ID = "grid_id"


class NotCompilable(Exception):
    """The operation runs on the normal executor; `reason` says why (a metric label)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Argued:
    """A field whose arguments are read at run time (they may be variables)."""

    definition: GraphQLField
    node: FieldNode
    strawberry_field: StrawberryField


@dataclass(slots=True)
class Leaf:
    """A scalar or enum: read from the source, masked or noted as the policy says, serialised
    by the role schema's own type."""

    column: str | None  # read this attribute of the source; None: call the resolver
    serialize: Callable[[Any], Any]
    non_null: bool
    computed: Argued | None = None
    mask: str | None = None
    audit: str | None = None  # "Type.field" when the field is sensitive
    # Applied to the column's value before serialising (a Node id from the row id).
    convert: Callable[[Any], Any] | None = None


@dataclass(slots=True)
class LeafList:
    """A list of scalars: computed from the row (`reads`) or loaded (`to_many`)."""

    serialize: Callable[[Any], Any]
    non_null: bool
    items_non_null: bool
    computed: Argued | None = None
    loader: str | None = None
    audit: str | None = None
    column: str | None = None  # a list held in one column (JSON)


@dataclass(slots=True)
class Typename:
    name: str


@dataclass(slots=True)
class Related:
    """The row of `model` whose id is in `column` (a to-one relation)."""

    column: str
    model: type[Any]
    plan: ObjectPlan
    non_null: bool
    audit: str | None = None


@dataclass(slots=True)
class Wrapped:
    """An object built from one column's value (a union's ExternalSystem)."""

    column: str
    build: Callable[..., Any]
    argument: str
    plan: ObjectPlan | None  # None: the type is not in this role's schema


@dataclass(slots=True)
class Option:
    """One member of a `first_of` union: a related row of `model`."""

    column: str
    model: type[Any]
    plan: ObjectPlan | None  # None: the type is not in this role's schema


@dataclass(slots=True)
class FirstOfPlan:
    options: list[Option | Wrapped]
    non_null: bool
    audit: str | None = None


@dataclass(slots=True)
class Computed:
    """An object the resolver builds from the row's columns (Coordinates)."""

    computed: Argued
    plan: ObjectPlan
    non_null: bool
    audit: str | None = None


@dataclass(slots=True)
class Many:
    """The list a `Loaders` DataLoader returns for the row's id."""

    loader: str
    plan: ObjectPlan
    non_null: bool
    items_non_null: bool
    audit: str | None = None


Step = Leaf | LeafList | Typename | Related | FirstOfPlan | Computed | Many


@dataclass(slots=True)
class ObjectPlan:
    """How one object type's dicts are built from its sources, in response-key order.

    Sources are rows of `model` selected by column (root lists, to-one relations), ORM objects
    (what loaders return) or plain objects (values built by resolvers)."""

    type_name: str
    model: type[Any] | None
    steps: list[tuple[str, Step]] = field(default_factory=list)
    # The columns the steps read: what a SELECT of these rows must include.
    columns: set[str] = field(default_factory=set)

    @property
    def needs_io(self) -> bool:
        return any(isinstance(s, Related | FirstOfPlan | Many) for _, s in self.steps)

    @property
    def audited(self) -> bool:
        return any(getattr(s, "audit", None) or getattr(s, "mask", None) for _, s in self.steps)


@dataclass(slots=True)
class PageInfoPlan:
    steps: list[tuple[str, str]]  # response key -> PageInfo field (or __typename)
    type_name: str


@dataclass(slots=True)
class EdgesPlan:
    steps: list[tuple[str, str | ObjectPlan]]  # "cursor", "__typename" or the node's plan
    type_name: str


@dataclass(slots=True)
class ListPlan:
    """A root list field: its builder, and the connection's parts in response-key order."""

    field: Argued
    builder: Callable[..., Any]
    model: type[Any]
    parts: list[tuple[str, str | PageInfoPlan | EdgesPlan | ObjectPlan]]
    type_name: str
    # Whether the arguments are all literals: then they are coerced and converted once, on the
    # first run, and kept here (input objects are never changed by the builders).
    literal: bool = False
    arguments: dict[str, Any] | None = None

    def node_plans(self) -> list[ObjectPlan]:
        plans = [p for _, p in self.parts if isinstance(p, ObjectPlan)]
        for _, part in self.parts:
            if isinstance(part, EdgesPlan):
                plans += [p for _, p in part.steps if isinstance(p, ObjectPlan)]
        return plans

    @property
    def cursors(self) -> bool:
        """Whether any edge asks for its cursor (pageInfo reads its two on its own)."""
        return any(
            step == "cursor"
            for _, part in self.parts
            if isinstance(part, EdgesPlan)
            for _, step in part.steps
        )


@dataclass(slots=True)
class LookupPlan:
    """A root lookup field: its builder, and the plan of the one row it names."""

    field: Argued
    builder: Callable[..., Any]
    model: type[Any]
    plan: ObjectPlan
    literal: bool = False
    arguments: dict[str, Any] | None = None

    def node_plans(self) -> list[ObjectPlan]:
        return [self.plan]


@dataclass(slots=True)
class Delegated:
    """A root field the compiler does not answer: graphql-core executes it, on its own, in
    `Plan.delegated` (root fields of a query are independent of each other)."""

    reason: str


RootStep = ListPlan | LookupPlan | Typename | Delegated


@dataclass(slots=True)
class Plan:
    roots: list[tuple[str, RootStep]]
    # Per model, every column any related row of it is read for: rows read by id are read once
    # per run with all of them (a grid, its parent and a resident's grid are one batch).
    related_columns: dict[type[Any], tuple[str, ...]] = field(default_factory=dict)
    # The delegated root fields as a document of their own (the operation's variables and the
    # document's fragments with them), for graphql-core; None when every root compiled.
    delegated: DocumentNode | None = None
