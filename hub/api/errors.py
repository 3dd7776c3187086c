"""The one place that turns failures into GraphQL errors.

Expected failures (hub.errors) keep their message and get `extensions.code`. Parse and
validation errors get a code too, without "Did you mean ...?" hints (they leak schema). Anything
else is unexpected: the client sees a generic message and a correlation id that also appears in
the server log with the stack trace; no exception text, SQL or stack reaches the client.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from hub.errors import GridHubError

log = logging.getLogger("hub.api")

# Anywhere in the message: graphql-core also puts hints mid-sentence ("... Did you mean
# 'inGrid'? Found: ...").
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def _unphased_code(error: GraphQLError) -> str | None:
    """The code of a request error that no parse or validation hook saw, or None if it is not
    one (then it is a fault of ours)."""
    if error.message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    # graphql-core coerces variables before any resolver runs, so its complaints about a
    # variable's value have no path: the document is valid, the input is not.
    if error.path is None:
        return "BAD_USER_INPUT"
    return None


def shape(error: GraphQLError, phase_code: str | None = None) -> GraphQLError:
    """`phase_code` names the step that found the error (parse or validation), if one did."""
    original = error.original_error
    if isinstance(original, GridHubError):
        return GraphQLError(
            original.message,
            nodes=error.nodes,
            path=error.path,
            extensions={"code": original.code, **original.extensions},
        )
    # graphql-core wraps the errors it makes itself (a variable's value failing its type keeps
    # the scalar's complaint as original_error): those describe the request, not a fault here.
    # An error shaped before keeps its code, so shaping twice changes nothing.
    if original is None or isinstance(original, GraphQLError):
        extensions = dict(error.extensions or {})
        code = extensions.get("code") or phase_code or _unphased_code(error)
        if code is not None:
            extensions["code"] = code
            return GraphQLError(
                _SUGGESTION.sub("", error.message),
                nodes=error.nodes,
                path=error.path,
                extensions=extensions,
            )
    correlation_id = uuid.uuid4().hex
    log.error(
        "unexpected error [correlation_id=%s] at %s",
        correlation_id,
        error.path,
        # No original exception: a GraphQL error raised on a path that no step accounts for.
        exc_info=(type(original), original, original.__traceback__) if original else None,
    )
    return GraphQLError(
        "Internal server error",
        nodes=error.nodes,
        path=error.path,
        extensions={"code": "INTERNAL_SERVER_ERROR", "correlationId": correlation_id},
    )


class ShapeErrors(SchemaExtension):
    def __init__(self, *, execution_context: Any = None) -> None:
        super().__init__(execution_context=execution_context)
        # id(error) -> the code of the step that reported it: a validation error and a bad
        # variable value look alike (no path, no original error) and differ only in when.
        self._phases: dict[int, str] = {}

    def _mark(self, code: str) -> None:
        for error in self.execution_context.pre_execution_errors or ():
            self._phases.setdefault(id(error), code)

    def on_parse(self) -> Iterator[None]:
        yield
        self._mark("GRAPHQL_PARSE_FAILED")

    def on_validate(self) -> Iterator[None]:
        yield
        self._mark("GRAPHQL_VALIDATION_FAILED")

    def _shape(self, error: GraphQLError) -> GraphQLError:
        return shape(error, self._phases.get(id(error)))

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [self._shape(error) for error in result.errors]

    def on_stream_result(self, result: Any) -> Iterator[None]:
        # Over WebSocket (subscriptions; queries and mutations too) each result is sent before
        # on_operation resumes, so shape here as well. shape() keeps already shaped errors as
        # they are, so a result seen by both hooks is unchanged by the second.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [self._shape(error) for error in errors]
        yield
