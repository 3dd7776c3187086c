"""Build response dicts from rows, as a plan's object plans say (hub.api.compiled.plans): one
function per object plan and batch of sources, which loads the batch's relations first (one
SELECT per related model, in the viewer's scope) and notes what it shows of sensitive fields.

`Run` is one request's run of a plan: its connection, variables, what it read. When a row does
not fit the plan (a NULL where the schema says non-null, a union member the role's schema
lacks), `Fallback` is raised and the operation reruns on the normal executor, which produces
the error and null bubbling exactly as graphql-core does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property, partial
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, cast

from graphql import GraphQLEnumType
from graphql.execution.values import VariableValues, get_argument_values
from graphql.type.scalars import serialize_boolean, serialize_id, serialize_string
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from strawberry.types.arguments import convert_arguments

from hub.api.compiled.plans import (
    ID,
    Argued,
    Computed,
    FirstOfPlan,
    Leaf,
    LeafList,
    Many,
    ObjectPlan,
    Option,
    Plan,
    Related,
    Step,
    Typename,
    Wrapped,
)
from hub.api.loaders import Loaders, by_id
from hub.api.roles import shown_masked
from hub.authz.reads import ReadLog

if TYPE_CHECKING:
    from strawberry import Schema

    from hub.api.context import Context

Build = Callable[[Any], Any]


class Fallback(Exception):
    """The rows do not fit the plan: the operation reruns on the normal executor."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _OneSession:
    """`Loaders` read through whatever `reader()` yields: here, a session on the run's own
    connection."""

    session: AsyncSession

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        yield self.session


@dataclass
class Run:
    context: Context
    schema: Schema
    variables: VariableValues
    # Every statement of the run goes through this one connection: column selects need no
    # ORM session, and a session costs a tenth of a millisecond to make and close.
    connection: AsyncConnection
    plan: Plan
    reads: ReadLog = field(default_factory=ReadLog)
    # Rows read by id so far, by model (None: out of scope or gone): each is read once per run.
    seen: dict[type[Any], dict[Any, Any]] = field(default_factory=dict)

    def arguments(self, argued: Argued) -> dict[str, Any]:
        return arguments(argued, self.schema, self.variables)

    @cached_property
    def session(self) -> AsyncSession:
        """For the Loaders of to-many fields (they read ORM rows), made when one is needed."""
        return AsyncSession(bind=self.connection)

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(_OneSession(self.session), self.context.access)

    async def rows(self, statement: Any) -> Sequence[Any]:
        return (await self.connection.execute(statement)).all()

    async def close(self) -> None:
        if "session" in self.__dict__:
            await self.session.close()


def arguments(argued: Argued, schema: Schema, variables: VariableValues) -> dict[str, Any]:
    """The field's arguments as its resolver receives them (graphql-core coerces them,
    strawberry converts them), exactly as the normal executor passes them."""
    raw = get_argument_values(argued.definition, argued.node, variables)
    return convert_arguments(
        raw,
        argued.strawberry_field.arguments,
        scalar_registry=schema.schema_converter.scalar_registry,
        config=schema.config,
    )


# --- reading sources -------------------------------------------------------------------------

Reader = Callable[[str], Callable[[Any], Any]]


def by_position(names: Sequence[str]) -> Reader:
    """Columns of rows this run selected itself, by position: a tuple index costs a tenth of
    a Row's attribute lookup, and a page reads a thousand of them."""
    positions = {name: index for index, name in enumerate(names)}
    return lambda name: itemgetter(positions[name])


by_attribute: Reader = attrgetter
"""Attributes of anything else: ORM objects from the loaders, objects built by resolvers."""


# --- objects ------------------------------------------------------------------------------------


async def prepare(
    plan: ObjectPlan, sources: Sequence[Any], run: Run, read: Reader = by_attribute
) -> Build:
    """A function from one of `sources` to its response dict. Relations of all the sources
    load here, one batch per relation; what they show of sensitive fields goes on the record
    here too, for all of them at once."""
    audited = [audit for _, step in plan.steps if (audit := getattr(step, "audit", None))]
    if audited and sources:
        row_id = read(ID) if ID in plan.columns else _id_if_any
        run.reads.add_rows(plan.type_name, audited, map(row_id, sources))
    values = [(key, await _prepare(step, sources, run, read)) for key, step in plan.steps]

    def build(source: Any) -> dict[str, Any]:
        return {key: value(source) for key, value in values}

    return build


def _id_if_any(source: Any) -> Any:
    return getattr(source, "id", None)


async def _prepare(step: Step, sources: Sequence[Any], run: Run, read: Reader) -> Build:
    if isinstance(step, Typename):
        name = step.name
        return lambda _source: name
    if isinstance(step, Leaf):
        return _leaf(step, run, read)
    if isinstance(step, Related):
        return await _related(step, sources, run, read)
    if isinstance(step, FirstOfPlan):
        return await _first_of(step, sources, run, read)
    if isinstance(step, Computed):
        return await _computed(step, run)
    if isinstance(step, LeafList):
        return await _leaf_list(step, sources, run, read)
    if isinstance(step, Many):
        return await _many(step, sources, run, read)
    raise AssertionError(f"unknown step {step!r}")  # pragma: no cover


def _call(argued: Argued, run: Run) -> Build:
    """The field's own resolver, with its arguments bound: called with the row as its root."""
    resolver = argued.strawberry_field.base_resolver
    assert resolver is not None
    arguments = run.arguments(argued) if argued.definition.args else {}
    function = cast(Callable[..., Any], resolver.wrapped_func)
    return partial(function, **arguments)


def _leaf(step: Leaf, run: Run, read_column: Reader) -> Build:
    if step.column is not None:
        read = read_column(step.column)
        if step.convert is not None:
            read = _compose(step.convert, read)
    else:
        assert step.computed is not None
        read = _call(step.computed, run)
    if step.mask is not None:
        read = partial(_masked, read, run.context.access, step.mask)
    serialize, non_null = _serializer(step.serialize), step.non_null

    def value(source: Any) -> Any:
        found = read(source)
        if found is None:
            if non_null:
                raise Fallback("null in a non-null field")
            return None
        return serialize(found)

    return value


# What graphql-core's standard scalars return unchanged: a value of exactly this type.
_UNCHANGED: dict[Callable[[Any], Any], type] = {
    serialize_string: str,
    serialize_id: str,
    serialize_boolean: bool,
}


def _serializer(serialize: Build) -> Build:
    """`serialize`, without the call where it would return its argument as it is, and
    remembered per value for an enum's (a pure function of a handful of values)."""
    unchanged = _UNCHANGED.get(serialize)
    if unchanged is not None:
        return lambda value: value if type(value) is unchanged else serialize(value)
    if isinstance(getattr(serialize, "__self__", None), GraphQLEnumType):
        names: dict[Any, Any] = {}

        def enum_name(value: Any) -> Any:
            try:
                return names[value]
            except KeyError:
                names[value] = name = serialize(value)
                return name

        return enum_name
    return serialize


def _compose(outer: Build, inner: Build) -> Build:
    return lambda source: outer(inner(source))


def _masked(read: Build, access: Any, kind: str, source: Any) -> Any:
    return shown_masked(access, kind, read(source), source)


def _required(value: Any, non_null: bool) -> Any:
    if value is None and non_null:
        raise Fallback("null in a non-null field")
    return value


async def _related(step: Related, sources: Sequence[Any], run: Run, read: Reader) -> Build:
    column = read(step.column)
    built = await _rows_by_id(step.model, step.plan, {column(s) for s in sources}, run)
    non_null = step.non_null
    return lambda source: _required(built.get(column(source)), non_null)


async def _rows_by_id(
    model: type[Any], plan: ObjectPlan, ids: set[Any], run: Run
) -> dict[Any, Any]:
    """The dicts of the rows of `model` with these ids that the viewer may see, by id. Each
    row is read once per run, with every column the operation reads of its model anywhere (an
    event's department and its timeline's departments), as a DataLoader would not read it
    twice."""
    ids.discard(None)
    if not ids:
        return {}
    names = run.plan.related_columns[model]
    read = by_position(names)
    row_id = read(ID)
    seen = run.seen.setdefault(model, {})
    missing = sorted(ids - seen.keys())
    if missing:
        columns = [getattr(model, name) for name in names]
        for row in await run.rows(by_id(run.context.access, model, missing, *columns)):
            seen[row_id(row)] = row
        seen.update((i, None) for i in missing if i not in seen)  # out of scope, or gone
    rows = [row for i in ids if (row := seen[i]) is not None]
    build = await prepare(plan, rows, run, read)
    return {row_id(row): build(row) for row in rows}


async def _first_of(step: FirstOfPlan, sources: Sequence[Any], run: Run, read: Reader) -> Build:
    """The first option whose column is set decides, as the resolver's if-chain does."""
    columns = [read(option.column) for option in step.options]
    chosen: list[list[Any]] = [[] for _ in step.options]
    for source in sources:
        for index, column in enumerate(columns):
            if column(source) is not None:
                chosen[index].append(source)
                break
    values: list[tuple[Build, Build]] = []
    for option, column, given in zip(step.options, columns, chosen, strict=True):
        if isinstance(option, Wrapped):
            values.append((column, await _wrapped(option, given, run)))
        else:
            values.append((column, await _option(option, given, column, run)))
    non_null = step.non_null

    def value(source: Any) -> Any:
        for column, show in values:
            found = column(source)
            if found is not None:
                return _required(show(found), non_null)
        return _required(None, non_null)

    return value


async def _option(option: Option, given: list[Any], column: Build, run: Run) -> Build:
    ids = {column(s) for s in given}
    if option.plan is None:
        # The role's schema has no such type, and its rows are out of the viewer's scope
        # unless a query for them finds one: then the normal executor must answer.
        if ids and await run.rows(
            by_id(run.context.access, option.model, sorted(ids), option.model.id)
        ):
            raise Fallback(f"a {option.model.__name__} outside the role's schema")
        return lambda _id: None
    built = await _rows_by_id(option.model, option.plan, ids, run)
    return built.get


async def _wrapped(option: Wrapped, given: list[Any], run: Run) -> Build:
    if option.plan is None:
        if given:
            raise Fallback(f"a {option.build.__name__} outside the role's schema")
        return lambda _value: None
    build = await prepare(option.plan, (), run)
    make, argument = option.build, option.argument
    return lambda value: build(make(**{argument: value}))


async def _computed(step: Computed, run: Run) -> Build:
    call = _call(step.computed, run)
    build = await prepare(step.plan, (), run)
    non_null = step.non_null

    def value(source: Any) -> Any:
        made = call(source)
        return _required(None, non_null) if made is None else build(made)

    return value


async def _leaf_list(step: LeafList, sources: Sequence[Any], run: Run, read: Reader) -> Build:
    if step.column is not None:
        items_of: Build = read(step.column)
    elif step.computed is not None:
        items_of = _call(step.computed, run)
    else:
        assert step.loader is not None
        items_of = await _loaded(step.loader, sources, run, read)
    serialize, non_null, items_non_null = step.serialize, step.non_null, step.items_non_null

    def value(source: Any) -> Any:
        items = items_of(source)
        if items is None:
            return _required(None, non_null)
        return [_required(None, items_non_null) if i is None else serialize(i) for i in items]

    return value


async def _many(step: Many, sources: Sequence[Any], run: Run, read: Reader) -> Build:
    items_of = await _loaded(step.loader, sources, run, read)
    everything = [item for source in sources for item in items_of(source)]
    build = await prepare(step.plan, everything, run)
    items_non_null = step.items_non_null
    return lambda source: [
        _required(None, items_non_null) if i is None else build(i) for i in items_of(source)
    ]


async def _loaded(loader: str, sources: Sequence[Any], run: Run, read: Reader) -> Build:
    """What the named DataLoader returns for each source's id: the normal path's own batch."""
    row_id = read(ID)
    ids = [row_id(source) for source in sources]
    lists = await getattr(run.loaders, loader).load_many(ids) if ids else []
    by_id_ = dict(zip(ids, lists, strict=True))
    return lambda source: by_id_[row_id(source)]
