"""Abuse limits for the GraphQL endpoint. Each limit fails with its own stable `extensions.code`.

Where each limit lives, and why there:

- REQUEST_TOO_LARGE (413): `BodySizeLimit`, ASGI middleware. It counts the body while it
  streams in, so a missing or untruthful Content-Length does not help; a declared length above
  the limit is refused before any of the body is read. WebSockets pass through untouched.
- QUERY_TOO_LONG, TOO_MANY_TOKENS: the parse step of `LimitsExtension`. The source length is
  checked before parsing (the token limit skips whitespace, comments and long strings, so alone
  it does not bound the parser's work); tokens are counted by graphql-core's parser itself.
- QUERY_TOO_DEEP, TOO_MANY_ALIASES, COST_LIMIT (per operation): a validation rule, so it runs
  for queries, mutations and subscriptions on every transport, and only once per document
  thanks to strawberry's ValidationCache.
- COST_LIMIT (per batch): the execute step adds each operation's cost to its HTTP request's
  total; the operations of a batch share that request's context.
- TIMEOUT: the execute step runs under `asyncio.timeout`, which cancels the pending I/O. The
  error is raised (the only way strawberry lets an extension end execution), so the response
  carries no `data`, like a validation error.
- Database sessions per request (no error, a queue): `hub.api.context.RequestDatabase` lets
  one HTTP request or WebSocket connection hold `max_sessions_per_request` sessions at once.
  A timed-out statement does not run on: SQLite's is interrupted when its task is cancelled,
  PostgreSQL's runs under a `statement_timeout` (`Limits.statement_timeout_seconds`).
- TOO_MANY_SUBSCRIPTIONS: operations in flight on one WebSocket connection
  (`hub.api.http.TransportWSHandler`).
- BAD_USER_INPUT past `hub.api.filters.MAX_LIST_ITEMS` distinct values in a list filter.

The cost is a static estimate, the same for every run of a document (so validation stays
cacheable): every field costs 1, an aggregate `Limits.aggregate_cost` (see `aggregate_fields`:
it reads every matching row however short its answer), and a list multiplies the cost of what
is selected under it by its length. A connection's `edges`/`nodes` are as long as its
`first`/`last` when that is a literal (clamped to `max_page_size`: a bigger page fails with
PAGE_SIZE_LIMIT anyway), and `max_page_size` when it is a variable or absent - variables are
not known to a cached validation, and `max_page_size` is the true upper bound either way. Other
lists of objects (a grid's members, an event's timeline: their loaders bound them, see
hub.api.loaders) count `Limits.list_size_estimate` items; introspection lists count their mean
length in the schema (see `introspection_sizes`). Lists of scalars cost 1. Depth counts fields
nested in fields, through fragments; aliases are counted at every
spread of the fragment that holds them.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    get_named_type,
    get_nullable_type,
    is_list_type,
    parse,
)
from graphql.language import SKIP
from graphql.type import (
    SchemaMetaFieldDef,
    TypeMetaFieldDef,
    TypeNameMetaFieldDef,
)
from graphql.utilities import get_operation_ast
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from hub.config import Limits

# Caches of parsed documents and of operation costs, per schema. Bounded, so a stream of unique
# queries cannot grow memory.
CACHE_SIZE = 512

# --- request body -------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    """Raised from `receive` to unwind the app as soon as the body goes past the limit."""


class BodySizeLimit:
    """Refuse HTTP request bodies above `max_body_bytes` with 413 and a GraphQL-shaped error."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = (
            b'{"errors":[{"message":"request body is larger than %d bytes",'
            b'"extensions":{"code":"REQUEST_TOO_LARGE","maximum":%d}}]}'
            % (self.max_body_bytes, self.max_body_bytes)
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is never read: the connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# --- static analysis: depth, aliases, cost ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Weight:
    """What an operation (or a part of one) weighs: nesting depth, aliases and estimated cost."""

    depth: int = 0
    aliases: int = 0
    # Fractional inside (introspection lists have mean lengths); `estimate` is what is compared.
    cost: float = 0

    @property
    def estimate(self) -> int:
        return math.ceil(round(self.cost, 6))


NOTHING = Weight()
UNMEASURABLE = Weight(depth=sys.maxsize)

# A `__Type`'s `ofType` chain only unwraps list/non-null wrappers: the standard introspection
# query nests it nine deep. It must not count as depth, or GraphiQL could not load the schema.
_UNWRAPPING = ("__Type", "ofType")


class _Weigher:
    """Weighs the operations of one document. Fragments are weighed once per page size and
    counted at every spread (a fragment spread twice counts twice), so an exponential document
    costs linear work to weigh."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, limits: Limits) -> None:
        self.schema = schema
        self.max_page = limits.max_page_size
        self.list_size = limits.list_size_estimate
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.introspection = introspection_sizes(schema)
        self.aggregates = aggregate_fields(schema)
        self.aggregate_cost = limits.aggregate_cost
        self._weighed: dict[tuple[str, int | None], Weight] = {}
        self._open: set[str] = set()

    def operation(self, operation: OperationDefinitionNode) -> Weight:
        root = self.schema.get_root_type(operation.operation)
        try:
            return self._selections(operation.selection_set, root, None)
        except RecursionError:
            # Only reachable with limits raised far above the defaults (the parser refuses
            # deep nesting, the token limit long fragment chains): too deep, whatever the limit.
            return UNMEASURABLE

    def _selections(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None, page: int | None
    ) -> Weight:
        """`page` is the page size of the connection whose fields these are, if any."""
        depth = aliases = 0
        cost: float = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                weight = self._field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                fragment_type = self.schema.get_type(condition.name.value) if condition else parent
                weight = self._selections(selection.selection_set, fragment_type, page)
            elif isinstance(selection, FragmentSpreadNode):
                weight = self._spread(selection.name.value, page)
            else:  # pragma: no cover - the grammar has no other selections
                continue
            depth = max(depth, weight.depth)
            aliases += weight.aliases
            cost += weight.cost
        return Weight(depth, aliases, cost)

    def _spread(self, name: str, page: int | None) -> Weight:
        key = (name, page)
        if key in self._weighed:
            return self._weighed[key]
        fragment = self.fragments.get(name)
        # Unknown fragments and cycles are reported by the standard rules; weigh them as nothing.
        if fragment is None or name in self._open:
            return NOTHING
        self._open.add(name)
        try:
            fragment_type = self.schema.get_type(fragment.type_condition.name.value)
            weight = self._selections(fragment.selection_set, fragment_type, page)
        finally:
            self._open.discard(name)
        self._weighed[key] = weight
        return weight

    def _field(self, node: FieldNode, parent: GraphQLNamedType | None, page: int | None) -> Weight:
        alias = 1 if node.alias else 0
        definition = self._definition(parent, node.name.value)
        if definition is None:
            # An unknown field (another rule reports it): weigh what is under it all the same.
            below = (
                self._selections(node.selection_set, None, None) if node.selection_set else NOTHING
            )
            return Weight(below.depth + 1, below.aliases + alias, below.cost + 1)
        own_page = self._page_size(node, definition)
        below = NOTHING
        factor: float = 1
        if node.selection_set:
            below = self._selections(node.selection_set, get_named_type(definition.type), own_page)
            key = (parent.name if parent else "", node.name.value)
            if key in self.introspection:
                factor = self.introspection[key]
            elif is_list_type(get_nullable_type(definition.type)):
                factor = next(s for s in (own_page, page, self.list_size) if s is not None)
        coordinate = (parent.name if parent else "", node.name.value)
        own = self.aggregate_cost if coordinate in self.aggregates else 1
        return Weight(
            depth=below.depth + (0 if coordinate == _UNWRAPPING else 1),
            aliases=below.aliases + alias,
            cost=own + factor * below.cost,
        )

    def _definition(self, parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
        if name == "__typename":
            return TypeNameMetaFieldDef
        if parent is not None and parent is self.schema.query_type:
            if name == "__schema":
                return SchemaMetaFieldDef
            if name == "__type":
                return TypeMetaFieldDef
        fields = getattr(parent, "fields", None)
        return fields.get(name) if fields is not None else None

    def _page_size(self, node: FieldNode, definition: GraphQLField) -> int | None:
        """The page size of a paginated field (one taking first/last), else None."""
        if "first" not in definition.args and "last" not in definition.args:
            return None
        sizes = [
            max(0, min(int(arg.value.value), self.max_page))
            if isinstance(arg.value, IntValueNode)
            else self.max_page
            for arg in node.arguments or ()
            if arg.name.value in ("first", "last")
        ]
        return max(sizes, default=self.max_page)


# The root field whose type's fields are all aggregates, and the aggregate of every connection.
STATS_FIELD = "stats"
TOTAL_COUNT_FIELD = "totalCount"


@lru_cache(maxsize=8)
def aggregate_fields(schema: GraphQLSchema) -> frozenset[tuple[str, str]]:
    """(type, field) of every aggregate: `totalCount` wherever it appears, and every field of the
    type `Query.stats` returns. Found by shape, so a new stats field is priced without a list to
    keep up to date."""
    found: set[tuple[str, str]] = set()
    for named in schema.type_map.values():
        if isinstance(named, GraphQLObjectType) and TOTAL_COUNT_FIELD in named.fields:
            found.add((named.name, TOTAL_COUNT_FIELD))
    query = schema.query_type
    stats = query.fields.get(STATS_FIELD) if query is not None else None
    if stats is not None:
        stats_type = get_named_type(stats.type)
        if isinstance(stats_type, GraphQLObjectType):
            found.update((stats_type.name, name) for name in stats_type.fields)
    return frozenset(found)


@lru_cache(maxsize=8)
def introspection_sizes(schema: GraphQLSchema) -> dict[tuple[str, str], float]:
    """The mean length of each introspection list in this schema (and of `ofType` chains).

    Introspection answers from the schema in memory, without awaiting: it blocks the event loop
    for as long as it runs, so it must be costed as it is, not with a guess. The standard
    introspection query is then estimated close to the number of fields it really returns,
    and many aliased copies of it are refused. (Nesting `fields { type { fields ...` is already
    refused by graphql-core's MaxIntrospectionDepthRule.)
    """
    types = list(schema.type_map.values())
    with_fields = [t for t in types if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)]
    fields = [f for t in with_fields for f in t.fields.values()]
    directives = list(schema.directives)

    def mean(total: int, count: int) -> float:
        return total / count if count else 0.0

    # `ofType` is not a list but a chain of wrappers (`[Grid!]!` is three deep); the standard
    # query asks nine levels of it. Weigh each level by the chance that a type reference goes
    # that deep, modelled as geometric with the schema's mean number of wrappers per reference.
    references = [f.type for f in fields] + [a.type for f in fields for a in f.args.values()]
    wrappers = mean(sum(_wrappers(t) for t in references), len(references))

    n = len(types)
    return {
        ("__Schema", "types"): n,
        ("__Schema", "directives"): len(directives),
        ("__Type", "fields"): mean(len(fields), n),
        ("__Type", "interfaces"): mean(sum(len(t.interfaces) for t in with_fields), n),
        ("__Type", "possibleTypes"): mean(
            sum(
                len(schema.get_possible_types(t))
                for t in types
                if isinstance(t, GraphQLInterfaceType | GraphQLUnionType)
            ),
            n,
        ),
        ("__Type", "enumValues"): mean(
            sum(len(t.values) for t in types if isinstance(t, GraphQLEnumType)), n
        ),
        ("__Type", "inputFields"): mean(
            sum(len(t.fields) for t in types if isinstance(t, GraphQLInputObjectType)), n
        ),
        ("__Field", "args"): mean(sum(len(f.args) for f in fields), len(fields)),
        ("__Directive", "args"): mean(sum(len(d.args) for d in directives), len(directives)),
        _UNWRAPPING: wrappers / (wrappers + 1),
    }


def _wrappers(type_: Any) -> int:
    count = 0
    while hasattr(type_, "of_type"):
        type_, count = type_.of_type, count + 1
    return count


def weigh(
    schema: GraphQLSchema, document: DocumentNode, limits: Limits
) -> dict[str | None, Weight]:
    """The weight of each operation in `document`, by operation name."""
    weigher = _Weigher(schema, document, limits)
    return {
        (d.name.value if d.name else None): weigher.operation(d)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    }


def _operation_label(name: str | None) -> str:
    return f"operation {name}" if name else "the operation"


def limit_error(code: str, message: str, nodes: Any = None, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, nodes=nodes, extensions={"code": code, **extensions})


def _rule_for(limits: Limits) -> type[ValidationRule]:
    class OperationLimits(ValidationRule):
        """Depth, aliases and cost of every operation in the document."""

        def enter_document(self, node: DocumentNode, *_args: Any) -> Any:
            weigher = _Weigher(self.context.schema, node, limits)
            for definition in node.definitions:
                if isinstance(definition, OperationDefinitionNode):
                    self._check(definition, weigher.operation(definition))
            return SKIP  # Weighed as a whole: nothing left to visit.

        def _check(self, operation: OperationDefinitionNode, weight: Weight) -> None:
            label = _operation_label(operation.name.value if operation.name else None)
            if weight is UNMEASURABLE:
                self.report_error(
                    limit_error(
                        "QUERY_TOO_DEEP",
                        f"{label} is nested too deeply to measure; "
                        f"the maximum depth is {limits.max_depth}",
                        operation,
                        maximum=limits.max_depth,
                    )
                )
                return
            if weight.depth > limits.max_depth:
                self.report_error(
                    limit_error(
                        "QUERY_TOO_DEEP",
                        f"{label} is nested {weight.depth} levels deep; "
                        f"the maximum is {limits.max_depth}",
                        operation,
                        depth=weight.depth,
                        maximum=limits.max_depth,
                    )
                )
            if weight.aliases > limits.max_aliases:
                self.report_error(
                    limit_error(
                        "TOO_MANY_ALIASES",
                        f"{label} uses {weight.aliases} aliases (fragments counted at every "
                        f"spread); the maximum is {limits.max_aliases}",
                        operation,
                        aliases=weight.aliases,
                        maximum=limits.max_aliases,
                    )
                )
            if weight.estimate > limits.max_cost:
                self.report_error(
                    limit_error(
                        "COST_LIMIT",
                        f"{label} has an estimated cost of {weight.estimate}; "
                        f"the maximum is {limits.max_cost}",
                        operation,
                        cost=weight.estimate,
                        maximum=limits.max_cost,
                    )
                )

    return OperationLimits


# --- the schema extension -----------------------------------------------------------------------


class GraphQLLimits:
    """The limits of one schema: build it once and pass `.extension` (a factory) to the Schema.

    It holds the validation rule class and the caches, so they are shared by every request:
    a rule class that changed per request would miss strawberry's ValidationCache every time.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.rule = _rule_for(limits)
        self._parse = lru_cache(maxsize=CACHE_SIZE)(self._parse_uncached)
        self._costs: dict[tuple[str | None, str | None], int] = {}
        self._token_error = f"Document contains more than {limits.max_tokens} tokens."

    def extension(self) -> LimitsExtension:
        return LimitsExtension(self)

    def parse_options(self) -> dict[str, Any]:
        return {
            "max_source_length": self.limits.max_query_chars,
            "max_lexical_tokens": self.limits.max_tokens,
        }

    def _parse_uncached(self, query: str) -> DocumentNode:
        return parse(query, **self.parse_options())

    def parse(self, query: str) -> DocumentNode:
        return self._parse(query)

    def is_token_error(self, error: GraphQLSyntaxError) -> bool:
        return self._token_error in error.message

    def cost(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        query: str | None,
        operation: str | None,
    ) -> int:
        """The estimated cost of the operation that runs. Cached by query text (Python caches a
        string's hash; hashing a document walks all of it): one GraphQLLimits serves one schema,
        and equal texts parse to equal documents."""
        key = (query, operation)
        cost = self._costs.get(key) if query is not None else None
        if cost is None:
            definition = get_operation_ast(document, operation)
            weigher = _Weigher(schema, document, self.limits)
            cost = weigher.operation(definition).estimate if definition is not None else 0
            if query is not None:
                self._costs[key] = cost
                if len(self._costs) > CACHE_SIZE:
                    del self._costs[next(iter(self._costs))]  # The oldest entry.
        return cost


class LimitsExtension(SchemaExtension):
    def __init__(self, policy: GraphQLLimits) -> None:
        super().__init__()
        self.policy = policy

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.validation_rules = (*context.validation_rules, self.policy.rule)
        yield

    def on_parse(self) -> Iterator[None]:
        """Parse through the cache, with the length and token limits.

        A document that fails to parse is left to strawberry's own parse, which raises the same
        error on the path that turns it into a GraphQL response (over HTTP and WebSocket alike).
        Errors from our limits are then given their code and a plain message.
        """
        context = self.execution_context
        limits = self.policy.limits
        options = cast(dict[str, Any], context.parse_options)
        options.update(self.policy.parse_options())
        rejected: GraphQLError | None = None
        query = context.query
        if context.graphql_document is None and query:
            if len(query) > limits.max_query_chars:
                rejected = limit_error(
                    "QUERY_TOO_LONG",
                    f"the query is {len(query)} characters long; "
                    f"the maximum is {limits.max_query_chars}",
                    length=len(query),
                    maximum=limits.max_query_chars,
                )
            else:
                try:
                    context.graphql_document = self.policy.parse(query)
                except GraphQLSyntaxError as error:
                    if self.policy.is_token_error(error):
                        rejected = limit_error(
                            "TOO_MANY_TOKENS",
                            f"the query has more than {limits.max_tokens} tokens",
                            maximum=limits.max_tokens,
                        )
        yield
        if rejected is not None:
            for parse_error in context.pre_execution_errors or ():
                # The parser's own error object is the one in the response: reword it in place.
                parse_error.message = rejected.message
                parse_error.extensions = rejected.extensions
                parse_error.locations = None

    async def on_execute(self) -> AsyncIterator[None]:
        self._admit()
        seconds = self.policy.limits.execution_timeout_seconds
        try:
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError:
            # Raised, not returned: strawberry lets an extension end execution only this way,
            # so the response has no `data`, like a validation error.
            raise limit_error(
                "TIMEOUT",
                f"the operation did not finish within {seconds:g} seconds and was stopped",
                seconds=seconds,
            ) from None

    def _admit(self) -> None:
        """Count this operation against its HTTP request's budget (the operations of a batch
        share the request's state) and refuse it, before it runs, past the budget."""
        context = self.execution_context
        document = context.graphql_document
        state = getattr(context.context, "state", None)
        request = getattr(context.context, "request", None)
        if document is None or state is None or not isinstance(request, Request):
            return  # A WebSocket context lives as long as its connection: no batches there.
        cost = self.policy.cost(
            context.schema._schema, document, context.query, context.operation_name
        )
        total = state.cost + cost
        maximum = self.policy.limits.max_batch_cost
        if total > maximum:
            # Same code and shape as an operation over `max_cost`: refused before it runs.
            raise limit_error(
                "COST_LIMIT",
                f"the operations of this request have an estimated cost of {total}; "
                f"the maximum per request is {maximum}",
                cost=total,
                maximum=maximum,
            )
        state.cost = total
