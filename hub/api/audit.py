"""Purpose and audit for every GraphQL operation.

- Sensitive fields (the policy's `g2, <field>, sensitive` lines) are read only with a stated
  purpose: the `X-GridHub-Purpose` header (percent-encoded UTF-8, so it can be Chinese), or
  `"extensions": {"purpose": "..."}` in the request (the extension wins). Without one, an
  operation that selects a sensitive field fails before it runs with PURPOSE_REQUIRED, naming
  the fields.
- An operation that read sensitive fields appends one `read` record (fields, record ids,
  purpose) when it ends; the response waits for it.
- A mutation's record is appended inside its own transaction, just before the commit, naming
  the records and fields the transaction wrote: no change without its record, and no record of
  a change that rolled back.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import replace
from enum import Enum
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from graphql import DocumentNode, GraphQLError, GraphQLSchema, TypeInfo, TypeInfoVisitor, visit
from graphql.language import FieldNode, Visitor
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType
from strawberry.utils.str_converters import to_camel_case

from hub import validation
from hub.api.context import Context
from hub.api.roles import REQUIRES
from hub.authz import audit, tracking
from hub.errors import BadUserInput

PURPOSE_HEADER = "x-gridhub-purpose"
MAX_PURPOSE_CHARS = 200


def header_text(value: str | None) -> str | None:
    """The purpose header as text. It may be percent-encoded UTF-8 (`%E5%AE%B6%E8%AE%BF`), or
    raw UTF-8 (`家访`): ASGI hands header bytes over as latin-1, so those are decoded again
    as UTF-8 first, and any other non-ASCII byte is refused rather than stored garbled."""
    if value is None:
        return None
    try:
        if not value.isascii():
            value = value.encode("latin-1").decode("utf-8")
        return unquote(value, errors="strict")
    except UnicodeError:
        raise GraphQLError(
            "X-GridHub-Purpose must be UTF-8: percent-encode it (%E5%AE%B6 for 家)",
            extensions={"code": "BAD_USER_INPUT", "field": "purpose"},
        ) from None


def clean_purpose(value: Any) -> str | None:
    """A stated purpose, checked as every statement for the record is (hub.validation)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise GraphQLError(
            "purpose must be a string", extensions={"code": "BAD_USER_INPUT", "field": "purpose"}
        )
    try:
        return validation.statement(value, field="purpose", max_length=MAX_PURPOSE_CHARS)
    except BadUserInput as error:
        raise GraphQLError(
            error.message, extensions={"code": error.code, **error.extensions}
        ) from None


class _Selected(Visitor):
    def __init__(self, type_info: TypeInfo, wanted: frozenset[str]) -> None:
        super().__init__()
        self.type_info = type_info
        self.wanted = wanted
        self.found: set[str] = set()

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        parent = self.type_info.get_parent_type()
        if parent is not None:
            key = f"{parent.name}.{node.name.value}"
            if key in self.wanted:
                self.found.add(key)


@lru_cache(maxsize=1024)
def _sensitive_in(
    schema: GraphQLSchema, document: DocumentNode, wanted: frozenset[str]
) -> tuple[str, ...]:
    # Keyed on the schema and the parsed document, both cached objects: repeated operations of a
    # role cost one dictionary lookup.
    type_info = TypeInfo(schema)
    visitor = _Selected(type_info, wanted)
    visit(document, TypeInfoVisitor(type_info, visitor))
    return tuple(sorted(visitor.found))


def sensitive_selected(
    schema: GraphQLSchema, document: DocumentNode, wanted: frozenset[str]
) -> tuple[str, ...]:
    if not wanted:
        return ()
    return _sensitive_in(schema, document, wanted)


def entry(
    context: Context,
    kind: str,
    *,
    operation: str | None,
    outcome: str,
    fields: Collection[str],
    records: Collection[str],
) -> audit.AuditEntry:
    """The audit entry of an operation by `context`'s viewer. `audit.append` sorts and bounds
    the lists (past 1,000 record ids it keeps the first and counts the rest)."""
    viewer = context.access.viewer
    detail: dict[str, Any] = {"policy_version": context.access.profile.version}
    if context.access.emergency:
        detail["emergency"] = True
    return audit.AuditEntry(
        kind=kind,
        actor=viewer.subject,
        role=viewer.role,
        department=viewer.department_code,
        operation=operation,
        fields=tuple(fields),
        records=tuple(records),
        purpose=context.purpose,
        outcome=outcome,
        detail=detail,
    )


def input_keys(value: Any) -> Iterator[str]:
    """The schema names of what a filter or ordering input uses: `ResidentFilter.idNumber` for
    each field given, `ResidentSortField.BIRTH_DATE` for each enum value, nested inputs too."""
    if isinstance(value, Enum):
        definition = getattr(type(value), "__strawberry_definition__", None)
        if definition is not None:
            yield f"{definition.name}.{value.name}"
        return
    definition = getattr(type(value), "__strawberry_definition__", None)
    if definition is None:
        return
    for field in definition.fields:
        item = getattr(value, field.python_name, None)
        if item is None:
            continue
        yield f"{definition.name}.{field.graphql_name or to_camel_case(field.python_name)}"
        for element in item if isinstance(item, list) else [item]:
            yield from input_keys(element)


def note_sensitive_inputs(context: Context, *inputs: Any) -> tuple[frozenset[str], ...]:
    """Filters and sort keys that reveal a sensitive field read it as surely as selecting it
    (a birth-date range finds a birth date; a BIRTH_DATE cursor carries one): they need a
    purpose too, and go on the operation's read record. Returns the sensitive fields each input
    uses, in order: the list that used them names the rows it found on the record too
    (`Listing.found_by`, `Listing.ordered_by`)."""
    sensitive = context.access.profile.sensitive
    per_input = tuple(_sensitive_uses(value, sensitive) for value in inputs)
    _note_finding(context, frozenset[str]().union(*per_input), "filtering or sorting by")
    return per_input


def note_sensitive_arguments(context: Context, field: str, **given: Any) -> frozenset[str]:
    """Lookup arguments of `field` (`Query.event`) that name a sensitive field (REQUIRES'
    `Query.event(code)`), by their GraphQL names: a row found by the value of a sensitive field
    reveals it, as a filter does. Returns those fields (`Lookup.found_by`)."""
    sensitive = context.access.profile.sensitive
    used = frozenset(
        need
        for name, value in given.items()
        if value is not None
        for need in REQUIRES.get(f"{field}({name})", ())
        if need in sensitive
    )
    _note_finding(context, used, "looking up by")
    return used


def _note_finding(context: Context, used: frozenset[str], how: str) -> None:
    if not used:
        return
    if context.purpose is None:
        raise GraphQLError(
            f"{how} {', '.join(sorted(used))} needs a stated purpose: send "
            "the X-GridHub-Purpose header or extensions.purpose",
            extensions={"code": "PURPOSE_REQUIRED", "fields": sorted(used)},
        )
    context.reads.fields.update(used)


def _sensitive_uses(value: Any, sensitive: frozenset[str]) -> frozenset[str]:
    if value is None or not sensitive:
        return frozenset()
    return frozenset(
        need for key in input_keys(value) for need in REQUIRES.get(key, ()) if need in sensitive
    )


class AuditTrail(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        if not isinstance(context, Context):
            yield
            return
        stated = (execution.operation_extensions or {}).get("purpose")
        if stated is not None:
            context.purpose = clean_purpose(stated)
        document = execution.graphql_document
        if document is not None and context.purpose is None:
            found = sensitive_selected(
                execution.schema._schema, document, context.access.profile.sensitive
            )
            if found:
                raise GraphQLError(
                    f"reading {', '.join(found)} needs a stated purpose: send the "
                    "X-GridHub-Purpose header or extensions.purpose",
                    extensions={"code": "PURPOSE_REQUIRED", "fields": list(found)},
                )
        operation = execution.operation_name
        is_mutation = execution.operation_type is OperationType.MUTATION
        recorded: list[bool] = []
        if is_mutation:

            async def record_mutation(session: AsyncSession) -> None:
                written = tracking.touched(session)
                await audit.append(
                    session,
                    entry(
                        context,
                        getattr(context, "audit_kind", None) or "mutation",
                        operation=operation,
                        outcome="ok",
                        fields=written.fields,
                        records=written.records,
                    ),
                )
                tracking.forget(session)
                recorded.append(True)

            context.db.before_commit = record_mutation
        yield
        if is_mutation and not recorded:
            # Refused or failed before anything was committed: still on the record, with the
            # error codes (a run of CONFLICTs on ID numbers is someone probing who is registered).
            failed = entry(
                context,
                context.audit_kind or "mutation",
                operation=operation,
                outcome="error",
                fields=(),
                records=(),
            )
            codes = _error_codes(execution.result)
            if codes:
                failed = replace(failed, detail={**failed.detail, "codes": codes})
            await audit.append_now(context.db.database, failed)
        if context.reads:
            await flush_reads(context, operation)


def _error_codes(result: Any) -> list[str]:
    """The stable codes of a result's errors (hub.api.errors shapes them only after this
    extension has finished, so the code is read from the original error too)."""
    codes = set()
    for error in getattr(result, "errors", None) or []:
        code = getattr(error.original_error, "code", None) or (error.extensions or {}).get("code")
        codes.add(str(code or "INTERNAL_SERVER_ERROR"))
    return sorted(codes)


async def flush_reads(context: Context, operation: str | None) -> None:
    """Append the read record of what `context` has read so far, and start afresh."""
    reads = context.reads
    if not reads:
        return
    record = entry(
        context,
        "read",
        operation=operation,
        outcome="ok",
        fields=reads.fields,
        records=reads.records,
    )
    reads.clear()
    await audit.append_now(context.db.database, record)


class FailureBudget:
    """How many failed authentications a worker writes to the access log per second.

    Every failure is worth a record, but each record takes the chain's lock: a flood of bad
    tokens must not stall every mutation behind it. Past the budget, failures are counted and
    the count rides on the next record that is written (`detail.suppressed`)."""

    def __init__(self, per_second: float = 20.0, burst: int = 50) -> None:
        self.per_second = per_second
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self.suppressed = 0

    def take(self) -> int | None:
        """The number of failures suppressed since the last record if this one may be
        written (and the count starts again), else None."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens < 1:
            self.suppressed += 1
            return None
        self._tokens -= 1
        suppressed, self.suppressed = self.suppressed, 0
        return suppressed
