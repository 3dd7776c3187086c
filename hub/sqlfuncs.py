"""SQL expressions that SQLite and PostgreSQL spell differently, compiled per dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class seconds_between(FunctionElement[float]):
    """Seconds from the first timestamp to the second (NULL if either is NULL)."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    return (
        f"((julianday({compiler.process(end, **kw)}) - "
        f"julianday({compiler.process(start, **kw)})) * 86400.0)"
    )


@compiles(seconds_between, "postgresql")
def _seconds_pg(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))"


class year_month(FunctionElement[str]):
    """'YYYY-MM' of a UTC timestamp at a fixed UTC offset:
    year_month(column, literal_column(str(minutes)))."""

    type = String()
    inherit_cache = True
    name = "year_month"


def _month_parts(element: year_month, compiler: Any, **kw: Any) -> tuple[str, int]:
    value, offset = list(element.clauses)
    # The offset must be a literal_column: its text is part of SQLAlchemy's statement cache
    # key, whereas a bound literal's value is not, and the compiled SQL inlines the number.
    return compiler.process(value, **kw), int(offset.name)


@compiles(year_month, "sqlite")
def _month_sqlite(element: year_month, compiler: Any, **kw: Any) -> str:
    value, minutes = _month_parts(element, compiler, **kw)
    return f"strftime('%Y-%m', {value}, '{minutes:+d} minutes')"


@compiles(year_month, "postgresql")
def _month_pg(element: year_month, compiler: Any, **kw: Any) -> str:
    value, minutes = _month_parts(element, compiler, **kw)
    return f"to_char(({value} AT TIME ZONE 'UTC') + interval '{minutes:d} minutes', 'YYYY-MM')"
