"""How a field's value comes from its row, declared next to its resolver for compiled execution.

Compiled execution (hub.api.compiled) answers a query without graphql-core's executor, so it
must know what each resolver does with its row. A field says so in its strawberry metadata:

- nothing, for a plain attribute of the row (`name: str`);
- `reads("category")`: the resolver is a function of these columns of the row and nothing else
  (no `info`, no I/O); compiled execution calls the very same resolver with a row that has them;
- `to_one("grid_id")`: the row of the field's type whose id is in this column (null when the
  column is), read through the viewer's row scope like `Loaders` reads it;
- `first_of(...)`: the first of several `to_one`/`wraps` whose column is not null (a union);
- `wraps("reporter_system", ExternalSystem, "name")`: an object built from one column's value;
- `to_many("resident_tags")`: the list the named `Loaders` DataLoader returns for the row's id;
- `listing(builder)`: a root list field whose rows `builder` selects (hub.api.types.common.Listing);
- `lookup_of(builder)`: a root lookup field whose one row `builder` names (....common.Lookup);
- `global_id()`: the Node id of the row, as `to_global_id` writes it.

A field with a resolver and none of these is not compiled: a query that selects it runs on the
normal executor. tests/test_compiled_equivalence.py holds both paths to the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The strawberry field metadata key.
KEY = "gridhub.compiled"


@dataclass(frozen=True, slots=True)
class Reads:
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToOne:
    column: str
    # The GraphQL type of the row: the field's own type, or a union member's (first_of).
    type_name: str | None = None


@dataclass(frozen=True, slots=True)
class Wraps:
    column: str
    build: Callable[..., Any]
    argument: str


@dataclass(frozen=True, slots=True)
class FirstOf:
    options: tuple[ToOne | Wraps, ...]


@dataclass(frozen=True, slots=True)
class ToMany:
    loader: str


@dataclass(frozen=True, slots=True)
class ListOf:
    builder: Callable[..., Any]


@dataclass(frozen=True, slots=True)
class LookupOf:
    builder: Callable[..., Any]


@dataclass(frozen=True, slots=True)
class GlobalId:
    pass


Shape = Reads | ToOne | Wraps | FirstOf | ToMany | ListOf | LookupOf | GlobalId


def reads(*columns: str) -> dict[str, Shape]:
    return {KEY: Reads(columns)}


def to_one(column: str) -> dict[str, Shape]:
    return {KEY: ToOne(column)}


def wraps(column: str, build: Callable[..., Any], argument: str) -> Wraps:
    return Wraps(column, build, argument)


def first_of(*options: ToOne | Wraps) -> dict[str, Shape]:
    return {KEY: FirstOf(options)}


def option(column: str, type_name: str) -> ToOne:
    """One `first_of` option: the row of `type_name` whose id is in this column."""
    return ToOne(column, type_name)


def to_many(loader: str) -> dict[str, Shape]:
    return {KEY: ToMany(loader)}


def listing(builder: Callable[..., Any]) -> dict[str, Shape]:
    return {KEY: ListOf(builder)}


def lookup_of(builder: Callable[..., Any]) -> dict[str, Shape]:
    return {KEY: LookupOf(builder)}


def global_id() -> dict[str, Shape]:
    return {KEY: GlobalId()}


def shape_of(metadata: Any) -> Shape | None:
    return metadata.get(KEY) if metadata else None
