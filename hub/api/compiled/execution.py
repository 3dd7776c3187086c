"""Compiled execution in place of graphql-core's executor: answer a query from its plan, or
hand it to graphql-core.

`execute` is the execute function of GridHub's schemas (hub.api.schema.GridHubSchema).
strawberry calls it where it would call graphql-core's `execute`: after parsing, validation,
the limits and the purpose check, inside every extension's `on_execute` and so inside the
execution timeout; the access log, error shaping and the other extensions see its result as
they see graphql-core's. (An extension's `on_execute` could set the result too, but strawberry
does not unwind the extensions entered before it when one raises there: a timeout firing inside
it would escape as a bare cancellation instead of TIMEOUT.)

The normal executor runs for operations the compiler does not handle (decided once per plan
key), and for requests whose variables or rows do not fit their plan (decided per request).

One `CompiledQueries` per app holds the switch, the plans and the counters. Plans are keyed by
the role's schema, the query text, the operation name and the values of the operation's Boolean
variables (all @skip/@include can depend on), kept in an LRU and dropped when the policy
version changes.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import execute as graphql_execute
from graphql.execution.values import get_variable_values
from graphql.language import OperationType
from graphql.pyutils import AwaitableOrValue
from graphql.utilities import get_operation_ast
from strawberry.utils.await_maybe import await_maybe

from hub.api.compiled.compiler import compile_plan, fragments_of
from hub.api.compiled.objects import Fallback
from hub.api.compiled.plans import Delegated, NotCompilable, Plan
from hub.api.compiled.run import Delegate, run_plan
from hub.api.errors import describe
from hub.api.roles import profile_of
from hub.errors import GridHubError

if TYPE_CHECKING:
    from hub.api.context import Context

log = logging.getLogger(__name__)

Entry = Plan | NotCompilable


class PlanCache:
    """At most `size` plans (and refusals), least recently used first out; all of them dropped
    when the policy version changes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.version: int | None = None
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, version: int, key: Hashable) -> Entry | None:
        if version != self.version:
            self._entries.clear()
            self.version = version
            return None
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, version: int, key: Hashable, entry: Entry) -> None:
        if version != self.version:
            self._entries.clear()
            self.version = version
        self._entries[key] = entry
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


@dataclass
class Counts:
    """Operations answered from a cached plan (hits), from a plan compiled for them (misses),
    and left to the normal executor, by reason (fallbacks); and the root fields of answered
    operations that graphql-core executed on the plan's behalf, by reason (delegated)."""

    hits: int = 0
    misses: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)
    delegated: Counter[str] = field(default_factory=Counter)


class CompiledQueries:
    def __init__(self, *, enabled: bool = True, max_plans: int = 512) -> None:
        self.enabled = enabled
        self.plans = PlanCache(max_plans)
        self.counts = Counts()

    async def execute(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation_name: str | None,
        raw_variables: dict[str, Any] | None,
        context: Context,
        delegate: Delegate,
    ) -> GraphQLExecutionResult | None:
        """The result, or None when the normal executor must run (the reason is counted).
        `delegate` runs graphql-core on a document of the root fields a plan leaves to it."""
        reason, result = await self._execute(
            schema, document, operation_name, raw_variables or {}, context, delegate
        )
        if reason is not None:
            self.counts.fallbacks[reason] += 1
        return result

    async def _execute(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation_name: str | None,
        raw_variables: dict[str, Any],
        context: Context,
        delegate: Delegate,
    ) -> tuple[str | None, GraphQLExecutionResult | None]:
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return "no operation", None
        if operation.operation is not OperationType.QUERY:
            return operation.operation.value, None
        # Masks and sensitive fields come from the profile the role's schema was cut for: the
        # request's Access may be of an older policy version if one was installed meanwhile,
        # and the plan must agree with the schema's own resolvers.
        profile = profile_of(schema)
        if profile is None or document.loc is None:
            return "not a role's schema" if profile is None else "no query text", None
        variables = get_variable_values(schema, operation.variable_definitions or (), raw_variables)
        if isinstance(variables, list):
            return "variables", None
        key = (schema, document.loc.source.body, operation_name, _switches(operation, variables))
        entry = self.plans.get(profile.version, key)
        cached = entry is not None
        if entry is None:
            try:
                fragments = fragments_of(document.definitions)
                entry = compile_plan(schema, operation, fragments, variables, profile)
            except NotCompilable as refused:
                entry = refused
            except GraphQLError as refused:
                # A directive argument the variables make invalid (an explicit null for a
                # Boolean with a default): the normal executor reports it. Not cached: other
                # values of the same variables compile.
                return f"error: {_code(refused)}", None
            self.plans.put(profile.version, key, entry)
        if isinstance(entry, NotCompilable):
            return entry.reason, None
        strawberry_schema = schema._strawberry_schema  # type: ignore[attr-defined]
        try:
            data, reads = await run_plan(entry, context, strawberry_schema, variables, delegate)
        except Fallback as fallback:
            return f"rows: {fallback.reason}", None
        except (GridHubError, GraphQLError) as refused:
            # The normal executor raises the same error in its place, with its path.
            return f"error: {_code(refused)}", None
        except Exception as unexpected:  # the normal executor answers; the log says why
            # Without exc_info: a database error's text quotes row values (hub.api.errors).
            log.warning(
                "compiled execution failed; the normal executor answers\n%s", describe(unexpected)
            )
            return f"unexpected: {type(unexpected).__name__}", None
        context.reads.update(reads)
        self.counts.delegated.update(
            root.reason for _, root in entry.roots if isinstance(root, Delegated)
        )
        if cached:
            self.counts.hits += 1
        else:
            self.counts.misses += 1
        return None, GraphQLExecutionResult(data=data)


def execute(
    schema: GraphQLSchema, document: DocumentNode, **kwargs: Any
) -> AwaitableOrValue[GraphQLExecutionResult]:
    """graphql-core's `execute`, answered from a compiled plan when the context's
    CompiledQueries is on and has one."""
    context = kwargs.get("context_value")
    compiled = getattr(context, "compiled", None)
    if not isinstance(compiled, CompiledQueries) or not compiled.enabled:
        return graphql_execute(schema, document, **kwargs)
    return _compiled_or_normal(compiled, schema, document, kwargs)


async def _compiled_or_normal(
    compiled: CompiledQueries, schema: GraphQLSchema, document: DocumentNode, kwargs: Any
) -> GraphQLExecutionResult:
    async def delegate(part: DocumentNode) -> GraphQLExecutionResult:
        # The same call strawberry makes (middleware and all), for part of the operation.
        return cast(
            GraphQLExecutionResult, await await_maybe(graphql_execute(schema, part, **kwargs))
        )

    result = await compiled.execute(
        schema,
        document,
        kwargs.get("operation_name"),
        kwargs.get("variable_values"),
        kwargs["context_value"],
        delegate,
    )
    if result is not None:
        return result
    return cast(
        GraphQLExecutionResult, await await_maybe(graphql_execute(schema, document, **kwargs))
    )


def _code(error: GridHubError | GraphQLError) -> str:
    if isinstance(error, GridHubError):
        return error.code
    return str((error.extensions or {}).get("code", "GRAPHQL_ERROR"))


def _switches(operation: OperationDefinitionNode, variables: Any) -> tuple[Any, ...]:
    """The values of the operation's Boolean variables: the only ones @skip and @include take,
    so together with the query text they decide which fields a plan collects."""
    coerced = variables.coerced
    return tuple(
        coerced.get(definition.variable.name.value)
        for definition in operation.variable_definitions or ()
        if _is_boolean(definition.type)
    )


def _is_boolean(type_node: Any) -> bool:
    if isinstance(type_node, NonNullTypeNode):
        type_node = type_node.type
    return isinstance(type_node, NamedTypeNode) and type_node.name.value == "Boolean"
