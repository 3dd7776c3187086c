"""The limit on anonymous writes: every mutation the public role calls, per (mutation, client).

It is an extension, so it holds wherever an operation runs: /graphql over HTTP (each operation
of a batch on its own) and WebSocket, and every operation the in-process gateway runs (the
pages, and adapters such as Open311's). The counts are shared by every worker and host
(hub.authz.ratelimit); the numbers are `Settings.write_rule`.

A mutation field counts once per response key, so aliases count each (`a: submitFeedback(...)
b: submitFeedback(...)` is two). An operation takes all its calls of a mutation or none, and
is refused before it runs with RATE_LIMITED and `retryAfter` (seconds) in the error's
extensions; over HTTP the response also carries Retry-After. Invalid input still counts, as
it still costs a refused mutation. When the store cannot be asked, the operation is refused too
(INTERNAL_SERVER_ERROR, logged): the limit never lapses silently. A refused operation writes
no audit record: the limit sits before the audit trail, so a flood costs one counter statement
a request rather than a chain append.

The client is the address the server sees the request come from (`scope["client"]`, which
uvicorn's proxy-headers middleware rewrites only for peers in GRIDHUB_FORWARDED_ALLOW_IPS,
hub.app). IPv6 clients count per /64, the block one host is usually given. A gateway operation
without a request (no visitor behind it) counts as the one client "unknown".
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)
from starlette.requests import HTTPConnection
from starlette.responses import Response
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from hub.api.context import Context
from hub.api.errors import shape
from hub.authz.ratelimit import Decision, LimiterUnavailable, RateLimiter
from hub.authz.viewer import PUBLIC_ROLE
from hub.config import RateRule

RATE_LIMITED = "RATE_LIMITED"
UNKNOWN_CLIENT = "unknown"
# IPv6 addresses count per network of this size.
IPV6_PREFIX = 64


class PublicWriteLimit(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        if (
            isinstance(context, Context)
            and context.rate_limiter is not None
            and context.access.viewer.role == PUBLIC_ROLE
            and execution.operation_type is OperationType.MUTATION
            and execution.graphql_document is not None
        ):
            calls = mutation_calls(
                execution.graphql_document, execution.operation_name, execution.variables or {}
            )
            await _admit(context, calls)
        yield


async def _admit(context: Context, calls: Mapping[str, int]) -> None:
    limiter = context.rate_limiter
    assert limiter is not None
    client = client_key(context.request)
    for mutation, cost in sorted(calls.items()):
        rule = context.settings.write_rule(mutation)
        decision = await _hit(limiter, f"{mutation}|{client}", rule=rule, cost=cost)
        if decision.allowed:
            continue
        seconds = decision.retry_after_seconds
        if isinstance(context.response, Response):
            context.response.headers["Retry-After"] = str(seconds)
        raise GraphQLError(
            f"too many {mutation} calls from this client: at most {rule.limit} every "
            f"{rule.window_seconds:g} seconds; retry in {seconds} seconds",
            extensions={
                "code": RATE_LIMITED,
                "retryAfter": seconds,
                "limit": rule.limit,
                "windowSeconds": rule.window_seconds,
            },
        )


async def _hit(limiter: RateLimiter, key: str, *, rule: RateRule, cost: int) -> Decision:
    try:
        return await limiter.hit(key, rule=rule, cost=cost)
    except LimiterUnavailable as error:
        # Refused, as a fault of ours (INTERNAL_SERVER_ERROR, logged with a correlation id):
        # the write is not let through unlimited while the store is down.
        raise shape(GraphQLError("the rate limit's store failed", original_error=error)) from None


def client_key(request: Any) -> str:
    """The client a request counts as: its address, an IPv6 one as its /64."""
    client = request.client if isinstance(request, HTTPConnection) else None
    if client is None:
        return UNKNOWN_CLIENT
    try:
        address = ipaddress.ip_address(client.host)
    except ValueError:
        return client.host  # Not an address (a test transport's name): as it is.
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def mutation_calls(
    document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]
) -> Counter[str]:
    """How many times the operation calls each mutation field: once per response key, through
    fragments, leaving out what @skip/@include leave out."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    operation = next(
        (o for o in operations if o.name is not None and o.name.value == operation_name),
        operations[0] if len(operations) == 1 or operation_name is None else None,
    )
    keys: dict[str, str] = {}
    if operation is not None:
        _collect(operation.selection_set, fragments, variables, keys, set())
    return Counter(keys.values())


def _collect(
    selections: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    keys: dict[str, str],
    spread: set[str],
) -> None:
    for selection in selections.selections:
        if not _included(selection, variables):
            continue
        if isinstance(selection, FieldNode):
            key = (selection.alias or selection.name).value
            keys.setdefault(key, selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            _collect(selection.selection_set, fragments, variables, keys, spread)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in spread or name not in fragments:
                continue  # Validation refuses both; never loop.
            spread.add(name)
            _collect(fragments[name].selection_set, fragments, variables, keys, spread)


def _included(selection: Any, variables: Mapping[str, Any]) -> bool:
    for directive in selection.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        condition = next((a.value for a in directive.arguments if a.name.value == "if"), None)
        if isinstance(condition, BooleanValueNode):
            value = condition.value
        elif isinstance(condition, VariableNode) and condition.name.value in variables:
            value = bool(variables[condition.name.value])
        else:
            continue  # Not known here (a default): counted, which errs on the safe side.
        if value == (name == "skip"):
            return False
    return True
