"""The one place that turns failures into GraphQL errors.

Expected failures (hub.errors) keep their message and get `extensions.code`. Parse and
validation errors get a code too, without "Did you mean ...?" hints (they leak schema), and
without the offending value that graphql-core quotes back (an ID number sent as a number, a
phone in the wrong field). Anything else is unexpected: the client sees a generic message and
a correlation id that also appears in the server log with the stack trace; no exception text, SQL
or stack reaches the client, and a database error's text (which quotes row values) reaches
neither the client nor the log.
"""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from graphql import GraphQLError
from sqlalchemy.exc import SQLAlchemyError
from strawberry.extensions import SchemaExtension

from hub.errors import GridHubError

log = logging.getLogger("hub.api")

# Anywhere in the message: graphql-core also puts hints mid-sentence ("... Did you mean
# 'inGrid'? Found: ...").
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")

# --- Request errors that quote the client's value -------------------------------------------
# Each template is graphql-core 3.3's (or strawberry's) own wording, matched whole, with the
# quoted value dropped and the names (type, field, variable, argument, path) kept. Sources:
# graphql/type/scalars.py, graphql/type/definition.py (GraphQLEnumType),
# graphql/utilities/validate_input_value.py and coerce_input_value.py,
# graphql/execution/values.py (the "Variable/Argument ... has invalid value" prefix),
# graphql/language/parser.py (token descriptions), strawberry/schema/types/base_scalars.py.

_NAME = r"[_A-Za-z][_0-9A-Za-z]*"
_TYPE = r"[^']+"  # a printed type: a name with [ ] and ! around it
_SCALAR_COMPLAINTS = (
    "Int cannot represent non-integer value",
    "Int cannot represent non 32-bit signed integer value",
    "Float cannot represent non numeric value",
    "String cannot represent a non string value",
    "String cannot represent value",
    "Boolean cannot represent a non boolean value",
    "ID cannot represent value",
    "ID cannot represent a non-string and non-integer value",
)


def _unknown_field(match: re.Match[str]) -> str:
    # A literal's field is a GraphQL name; a variable's JSON key can be anything, even the
    # value meant for some field: show it only if it is a name.
    field = match["field"]
    named = f"unknown field '{field}'" if re.fullmatch(_NAME, field) else "an unknown field"
    return f"Expected value of type '{match['type']}' not to include {named}."


_Rewrite = Callable[[re.Match[str]], str]
_QUOTING: list[tuple[re.Pattern[str], _Rewrite]] = [
    (
        # "Int cannot represent non-integer value: 'x'"; Float may add why after the value.
        re.compile(
            f"(?P<what>{'|'.join(map(re.escape, _SCALAR_COMPLAINTS))}): .*?"
            r"(?P<why> \(value (?:is too large|would lose precision)\))?",
            re.DOTALL,
        ),
        lambda m: f"{m['what']}{m['why'] or ''}.",
    ),
    (
        # Greedy: the enum's name is in the last "' does not exist in '...' enum." of the text.
        re.compile(f"Value '.*' does not exist in '(?P<enum>{_NAME})' enum\\..*", re.DOTALL),
        lambda m: f"Value does not exist in '{m['enum']}' enum.",
    ),
    (
        re.compile(
            f"Enum '(?P<enum>{_NAME})' cannot represent (?P<what>non-string |non-enum |)value: .*",
            re.DOTALL,
        ),
        lambda m: f"Enum '{m['enum']}' cannot represent {m['what']}value.",
    ),
    (
        re.compile(
            f"Expected value of type '(?P<type>{_TYPE})' (?P<what>to be an object|to be valid"
            f"|to include required field '{_NAME}'), found: .*",
            re.DOTALL,
        ),
        lambda m: f"Expected value of type '{m['type']}' {m['what']}.",
    ),
    (
        re.compile(
            f"Expected value of type '(?P<type>{_TYPE})' not to include unknown field "
            r"'(?P<field>.*?)'(?:, found|\..*? Found): .*",
            re.DOTALL,
        ),
        _unknown_field,
    ),
    (
        # A scalar that refused without a message of its own (or with one that may quote).
        re.compile(
            f"Expected value of type '(?P<type>{_TYPE})'(?:, but encountered error '.*'; found"
            "|, found): .*",
            re.DOTALL,
        ),
        lambda m: f"Expected value of type '{m['type']}'.",
    ),
    (
        # strawberry's Date, DateTime, Time, Decimal, UUID: 'Value cannot represent a Date:
        # "x". Invalid isoformat string: 'x''.
        re.compile(f'Value cannot represent a (?P<type>{_NAME}): ".*', re.DOTALL),
        lambda m: f"Value cannot represent a {m['type']}.",
    ),
    (
        # The parser names the token it did not expect, with its text: "Unexpected Int
        # '110101199003077774'.", "Expected Name, found String '...'."
        re.compile(
            r"(?P<head>Syntax Error: (?:Unexpected |Expected (?:'[^']*'|[^ ,']+), found ))"
            r"(?P<kind>Name|Int|Float|String|BlockString|Comment) '.*'\.",
            re.DOTALL,
        ),
        lambda m: f"{m['head']}{m['kind']}.",
    ),
]

# "Variable '$input' has invalid value at .idNumber: <one of the above>"
_ABOUT_A_VALUE = re.compile(
    f"(?P<prefix>(?:Variable '\\${_NAME}'(?: defined by fragment '{_NAME}')?|Argument '{_NAME}')"
    f" has invalid (?:default )?value(?: at (?:\\.{_NAME}|\\[[0-9]+\\])+)?): (?P<inner>.*)",
    re.DOTALL,
)
_FALLBACK = "the value does not fit the expected type."
# What may follow that prefix unchanged: complaints that quote nothing, graphql-core's and the
# rewritten ones above (so that rewriting twice changes nothing).
_QUOTES_NOTHING = re.compile(
    "|".join(
        [
            f"Expected value of non-null type '{_TYPE}' not to be None\\.",
            f"Expected a value of non-null type '{_TYPE}' to be provided\\.",
            f"Expected variable '\\${_NAME}' provided to [^:]*\\.",
            f"Within OneOf Input Object type '{_TYPE}', exactly one field must be specified,"
            " and the value for that field must be non-null\\.",
            f"(?:{'|'.join(map(re.escape, _SCALAR_COMPLAINTS))})"
            r"(?: \(value (?:is too large|would lose precision)\))?\.",
            f"Value does not exist in '{_NAME}' enum\\.",
            f"Enum '{_NAME}' cannot represent (?:non-string |non-enum |)value\\.",
            f"Expected value of type '{_TYPE}'(?: to be an object| to be valid"
            f"| to include required field '{_NAME}'| not to include unknown field '{_NAME}'"
            "| not to include an unknown field|)\\.",
            f"Value cannot represent a {_NAME}\\.",
            re.escape(_FALLBACK),
        ]
    )
)


def _without_quoted_value(message: str) -> str | None:
    for pattern, rewrite in _QUOTING:
        match = pattern.fullmatch(message)
        if match is not None:
            return rewrite(match)
    return None


def without_values(message: str) -> str:
    """A request error's message with any value graphql-core quoted from the request removed.

    Only known templates are rewritten; other messages (about the document's structure: names
    of fields, arguments, types, variables) pass unchanged. After a "Variable ... has invalid
    value" prefix an unknown complaint is replaced whole: it is about a value, and may quote it.
    """
    about = _ABOUT_A_VALUE.fullmatch(message)
    if about is None:
        rewritten = _without_quoted_value(message)
        return message if rewritten is None else rewritten
    inner = about["inner"]
    rewritten = _without_quoted_value(inner)
    if rewritten is None:
        quiet = _QUOTES_NOTHING.fullmatch(_SUGGESTION.sub("", inner))
        rewritten = inner if quiet else _FALLBACK
    return f"{about['prefix']}: {rewritten}"


# --- Unexpected errors: the log ---------------------------------------------------------------

# Database errors quote row values: PostgreSQL's DETAIL ("Key (id_number)=(...) already
# exists"), "invalid input syntax for type integer: ...", SQLAlchemy's "[parameters: ...]"
# (hidden by hide_parameters, but the driver's own text is not).
_DATABASE_PACKAGES = frozenset({"sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "psycopg"})
# Attributes of driver errors that name schema objects and codes, never row values.
_SAFE_ATTRIBUTES = (
    "sqlstate",
    "sqlite_errorname",
    "schema_name",
    "table_name",
    "column_name",
    "constraint_name",
)
_MAX_CHAIN = 16


def _is_database_error(error: BaseException) -> bool:
    package = type(error).__module__.partition(".")[0]
    return isinstance(error, SQLAlchemyError) or package in _DATABASE_PACKAGES


def _type_name(error: BaseException) -> str:
    kind = type(error)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _headline(error: BaseException) -> str:
    if not _is_database_error(error):
        return "".join(traceback.format_exception_only(error)).rstrip("\n")
    known = []
    for name in _SAFE_ATTRIBUTES:
        value = getattr(error, name, None)
        if isinstance(value, str) and re.fullmatch(r"[_0-9A-Za-z.]{1,128}", value):
            known.append(f"{name}={value}")
    facts = f" ({', '.join(known)})" if known else ""
    return f"{_type_name(error)}{facts}: [message withheld: database errors quote row values]"


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and the exceptions Python would print above it, newest first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < _MAX_CHAIN and all(current is not e for e in chain):
        chain.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        else:
            current = None if current.__suppress_context__ else current.__context__
    return chain


def _contains_database_error(error: BaseException, depth: int = 0) -> bool:
    for link in _chain(error):
        if _is_database_error(link):
            return True
        inner = link.exceptions if isinstance(link, BaseExceptionGroup) else ()
        if depth < _MAX_CHAIN and any(_contains_database_error(e, depth + 1) for e in inner):
            return True
    return False


def describe(error: BaseException, depth: int = 0) -> str:
    """The traceback of `error` and its causes, as Python prints it, except that the message of
    any database error in the chain is replaced by its type and codes."""
    chain = _chain(error)
    parts: list[str] = []
    for newer, older in zip([None, *chain], chain, strict=False):
        block = "".join(traceback.format_tb(older.__traceback__))
        text = f"Traceback (most recent call last):\n{block}{_headline(older)}\n"
        if isinstance(older, BaseExceptionGroup) and depth < _MAX_CHAIN:
            for number, inner in enumerate(older.exceptions, 1):
                nested = describe(inner, depth + 1).replace("\n", "\n  | ")
                text += f"  +---- {number} ----\n  | {nested}\n"
        if newer is not None:
            link = (
                "The above exception was the direct cause of the following exception:"
                if newer.__cause__ is older
                else "During handling of the above exception, another exception occurred:"
            )
            text += f"\n{link}\n\n"
        parts.append(text)
    return "".join(reversed(parts)).rstrip("\n")


def _log_unexpected(correlation_id: str, path: Any, original: BaseException | None) -> None:
    if original is not None and _contains_database_error(original):
        # No exc_info: every formatter would print the exception's text. The stack goes into
        # the message instead, with the database's text withheld.
        log.error(
            "unexpected error [correlation_id=%s] at %s: %s\n%s",
            correlation_id,
            path,
            _type_name(original),
            describe(original),
        )
        return
    log.error(
        "unexpected error [correlation_id=%s] at %s",
        correlation_id,
        path,
        # No original exception: a GraphQL error raised on a path that no step accounts for.
        exc_info=(type(original), original, original.__traceback__) if original else None,
    )


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
            # Only the first shaping rewrites: a message that already has a code is either
            # shaped (its values gone) or written by GridHub (none quoted).
            message = error.message if extensions.get("code") else without_values(error.message)
            extensions["code"] = code
            return GraphQLError(
                _SUGGESTION.sub("", message),
                nodes=error.nodes,
                path=error.path,
                extensions=extensions,
            )
    correlation_id = uuid.uuid4().hex
    _log_unexpected(correlation_id, error.path, original)
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
