"""Request checks that sit between parsing and execution, for every transport."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from graphql import BREAK, GraphQLError, OperationDefinitionNode, StringValueNode, Visitor, visit
from strawberry.extensions import SchemaExtension

# Text no database column can hold: NUL (PostgreSQL text) and lone UTF-16 surrogates (not
# encodable as UTF-8). Left alone, they fail deep inside the driver as internal errors.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class RequireOperationName(SchemaExtension):
    """The GraphQL spec's GetOperation: a document with several operations needs an
    operationName. strawberry would quietly run the first one instead (its `operation_name`
    falls back to the first operation, so the name the client gave is read directly)."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if context._provided_operation_name is None and document is not None:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > 1:
                raise GraphQLError(
                    "the document holds several operations: name one with operationName",
                    extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
                )
        yield


def _unstorable_field(value: Any, name: str) -> str | None:
    """The name of the innermost input field (or variable) holding unstorable text, if any."""
    if isinstance(value, str):
        return name if _UNSTORABLE.search(value) else None
    items: Iterable[tuple[str, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((name, item) for item in value)
    else:
        return None
    return next((f for key, item in items if (f := _unstorable_field(item, key))), None)


class _UnstorableLiteral(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_: Any) -> Any:
        if _UNSTORABLE.search(node.value):
            self.found = True
            return BREAK
        return None


class RejectUnstorableText(SchemaExtension):
    """Refuse NUL and lone surrogates in any string argument, variable or literal, with
    BAD_USER_INPUT: one check for every filter, lookup and input, however it is validated."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        field = _unstorable_field(context.variables or {}, "variables")
        literal = False
        # The parser refuses raw control characters and surrogate escapes, so a literal can only
        # carry NUL through a \u escape: walk the document only when the source has one.
        if (
            field is None
            and context.graphql_document is not None
            and "\\u" in (context.query or "")
        ):
            visitor = _UnstorableLiteral()
            visit(context.graphql_document, visitor)
            literal = visitor.found
        if field is not None or literal:
            extensions = {"code": "BAD_USER_INPUT"} | ({"field": field} if field else {})
            raise GraphQLError(
                "a string holds a character that cannot be stored (NUL or a lone surrogate)",
                extensions=extensions,
            )
        yield
