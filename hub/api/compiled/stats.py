"""What compiled execution did in this worker, for operators: `Query.compiledExecution`."""

from __future__ import annotations

from collections import Counter

import strawberry

from hub.api.compiled.execution import CompiledQueries
from hub.api.context import Info


@strawberry.type(
    description="How many operations (or root fields) went to the normal executor, by reason."
)
class FallbackCount:
    reason: str = strawberry.field(
        description=(
            "Why the normal executor answered: `mutation`, `introspection`, `field Type.name` "
            "(a field the compiler does not handle), `variables`, `error: CODE` (the operation "
            "failed; the normal executor gives the error its path), `rows: ...` (a row did not "
            "fit the plan) or `unexpected: Type` (a fault of ours, in the log)."
        )
    )
    count: int


@strawberry.type(
    description=(
        "Compiled execution in the worker that answers: operations answered from a cached plan "
        "(hits), from a plan compiled for them (misses), and by the normal executor (fallbacks). "
        "Counted since the worker started; each worker counts its own."
    )
)
class CompiledExecution:
    enabled: bool
    plans: int = strawberry.field(description="Plans and refusals cached now.")
    max_plans: int
    hits: int
    misses: int
    fallbacks: int
    fallback_reasons: list[FallbackCount] = strawberry.field(description="Most frequent first.")
    delegated_fields: list[FallbackCount] = strawberry.field(
        description=(
            "Root fields of answered operations that the normal executor ran on their own "
            "(`__type` beside a list, say), by reason; most frequent first."
        )
    )


def snapshot(compiled: CompiledQueries) -> CompiledExecution:
    counts = compiled.counts
    return CompiledExecution(
        enabled=compiled.enabled,
        plans=len(compiled.plans),
        max_plans=compiled.plans.size,
        hits=counts.hits,
        misses=counts.misses,
        fallbacks=sum(counts.fallbacks.values()),
        fallback_reasons=_counted(counts.fallbacks),
        delegated_fields=_counted(counts.delegated),
    )


def _counted(counter: Counter[str]) -> list[FallbackCount]:
    return [FallbackCount(reason=reason, count=count) for reason, count in counter.most_common()]


@strawberry.type
class CompiledExecutionQuery:
    @strawberry.field(description="Compiled execution in this worker (operators).")
    def compiled_execution(self, info: Info) -> CompiledExecution | None:
        compiled = info.context.compiled
        return snapshot(compiled) if isinstance(compiled, CompiledQueries) else None
