"""Record the SQL an engine runs, for tests that count statements or read query plans."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event


@contextmanager
def captured_sql(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    """(statement, parameters) of every statement `engine` (a sync Engine) runs in the block."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
