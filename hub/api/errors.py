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

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from hub.errors import GridHubError

log = logging.getLogger("hub.api")

_SUGGESTION = re.compile(r"\s*Did you mean .*\?$", re.DOTALL)


def shape(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, GridHubError):
        return GraphQLError(
            original.message,
            nodes=error.nodes,
            path=error.path,
            extensions={"code": original.code, **original.extensions},
        )
    if original is None:
        extensions = dict(error.extensions or {})
        if "code" not in extensions:
            extensions["code"] = (
                "GRAPHQL_PARSE_FAILED"
                if error.message.startswith("Syntax Error")
                else "GRAPHQL_VALIDATION_FAILED"
            )
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
        exc_info=(type(original), original, original.__traceback__),
    )
    return GraphQLError(
        "Internal server error",
        nodes=error.nodes,
        path=error.path,
        extensions={"code": "INTERNAL_SERVER_ERROR", "correlationId": correlation_id},
    )


class ShapeErrors(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [shape(error) for error in result.errors]
