"""Run a plan: the root fields' builders first, then on one pooled connection one keyset
SELECT of the requested columns per root list, one SELECT per lookup, and the delegated root
fields on graphql-core; the response's `data` in the query's order.

Everything that decides what a viewer sees is the resolvers' own: each list's `Listing`
builder (filters, ordering, row scope), each lookup's `Lookup`, `pagination.keyset` and
`page_of` (cursors); below the roots, hub.api.compiled.objects builds the dicts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.execution.values import VariableValues

from hub import pagination
from hub.api.compiled.objects import Build, Fallback, Run, arguments, by_position, prepare
from hub.api.compiled.plans import (
    TYPENAME,
    EdgesPlan,
    ListPlan,
    LookupPlan,
    ObjectPlan,
    PageInfoPlan,
    Plan,
    Typename,
)
from hub.api.types.common import Listing, Lookup, page_sizes
from hub.authz.reads import ReadLog

if TYPE_CHECKING:
    from strawberry import Schema

    from hub.api.context import Context

PAGE_ARGUMENTS = ("first", "after", "last", "before")

Delegate = Callable[[DocumentNode], Awaitable[GraphQLExecutionResult]]


async def run_plan(
    plan: Plan, context: Context, schema: Schema, variables: VariableValues, delegate: Delegate
) -> tuple[dict[str, Any], ReadLog]:
    """The response's `data`, and what it read of the sensitive fields. `delegate` executes
    the plan's delegated root fields with graphql-core, as the normal executor would."""
    # The builders resolve filter codes through sessions of their own: before the run's.
    built: dict[str, Any] = {}
    for key, root in plan.roots:
        if isinstance(root, ListPlan):
            built[key] = await _listing(root, context, schema, variables)
        elif isinstance(root, LookupPlan):
            built[key] = root.builder(context, **_given(root, schema, variables))
    answered: dict[str, Any] = {}
    run = None
    if built:  # else nothing to read: no connection, and no await that could yield
        async with context.db.connection() as connection:
            run = Run(context, schema, variables, connection, plan)
            try:
                for key, root in plan.roots:
                    if isinstance(root, ListPlan):
                        listing, request = built[key]
                        answered[key] = await _connection(root, listing, request, run)
                    elif isinstance(root, LookupPlan):
                        answered[key] = await _found(root, built[key], run)
            finally:
                await run.close()
    if plan.delegated is not None:
        answered.update(await _delegated(plan.delegated, delegate))
    data = {
        key: root.name if isinstance(root, Typename) else answered[key] for key, root in plan.roots
    }
    return data, run.reads if run is not None else ReadLog()


async def _delegated(document: DocumentNode, delegate: Delegate) -> dict[str, Any]:
    """What graphql-core answers for the root fields the plan leaves to it. An error there
    (with its path and null bubbling) is the normal executor's to report, for the whole
    operation."""
    result = await delegate(document)
    if result.errors or result.data is None:
        raise Fallback("a delegated root field failed")
    return result.data


def _given(
    plan: ListPlan | LookupPlan, schema: Schema, variables: VariableValues
) -> dict[str, Any]:
    """The root field's arguments, as its resolver gets them: converted once per plan when
    they are all literals."""
    if plan.arguments is not None:
        return dict(plan.arguments)
    given = arguments(plan.field, schema, variables)
    if plan.literal:
        plan.arguments = dict(given)
    return given


async def _listing(
    plan: ListPlan, context: Context, schema: Schema, variables: VariableValues
) -> tuple[Listing, pagination.PageRequest]:
    given = _given(plan, schema, variables)
    paging = {name: given.pop(name, None) for name in PAGE_ARGUMENTS}
    listing: Listing = await plan.builder(context, **given)
    if listing.model is not plan.model:
        raise Fallback(f"{plan.type_name} lists {listing.model.__name__}")
    return listing, listing.page_request(**paging)


async def _found(plan: LookupPlan, found: Lookup, run: Run) -> dict[str, Any]:
    """The one row a lookup names, or the lookup's NOT_FOUND (the normal executor then
    answers with it, in its place)."""
    names = sorted(set(plan.plan.columns) | ({"id"} if found.found_by else set()))
    columns = (getattr(found.model, name) for name in names)
    rows = await run.rows(found.statement.with_only_columns(*columns).limit(1))
    if not rows:
        raise found.not_found()
    read = by_position(names)
    if found.found_by:
        found.note_found(run.reads, read("id")(rows[0]))
    build = await prepare(plan.plan, rows, run, read)
    return build(rows[0])


async def _connection(
    plan: ListPlan, listing: Listing, request: pagination.PageRequest, run: Run
) -> dict[str, Any]:
    node_plans = plan.node_plans()
    wanted = {listing.id_name, listing.key.column.key}
    names = sorted(wanted.union(*(p.columns for p in node_plans)))
    query = pagination.keyset(
        listing.statement.with_only_columns(*(getattr(listing.model, n) for n in names)),
        key=listing.key,
        id_column=listing.id_column,
        request=request,
        **page_sizes(run.context.settings.limits),
    )
    page = pagination.page_of(query, await run.rows(query.statement), cursors=plan.cursors)
    read = by_position(names)
    listing.note_found(run.reads, map(read(listing.id_name), page.items))
    builds = {id(p): await prepare(p, page.items, run, read) for p in node_plans}
    result: dict[str, Any] = {}
    for key, part in plan.parts:
        if part == TYPENAME:
            result[key] = plan.type_name
        elif part == "totalCount":
            result[key] = await listing.count(run.connection, run.reads)
        elif isinstance(part, PageInfoPlan):
            result[key] = _page_info(part, page, query)
        elif isinstance(part, EdgesPlan):
            result[key] = _edges(part, page, builds)
        elif isinstance(part, ObjectPlan):
            build = builds[id(part)]
            result[key] = [build(row) for row in page.items]
    return result


def _page_info(
    plan: PageInfoPlan, page: pagination.Page[Any], query: pagination.PageQuery
) -> dict[str, Any]:
    items = page.items
    values = {
        TYPENAME: plan.type_name,
        "hasNextPage": page.has_next_page,
        "hasPreviousPage": page.has_previous_page,
        "startCursor": pagination.cursor_of(query, items[0]) if items else None,
        "endCursor": pagination.cursor_of(query, items[-1]) if items else None,
    }
    return {key: values[name] for key, name in plan.steps}


def _edges(
    plan: EdgesPlan, page: pagination.Page[Any], builds: dict[int, Build]
) -> list[dict[str, Any]]:
    steps = [
        (key, builds[id(step)] if isinstance(step, ObjectPlan) else step)
        for key, step in plan.steps
    ]
    cursors = page.cursors or [""] * len(page.items)
    edges = []
    for cursor, row in zip(cursors, page.items, strict=True):
        edge: dict[str, Any] = {}
        for key, step in steps:
            if step == "cursor":
                edge[key] = cursor
            elif step == TYPENAME:
                edge[key] = plan.type_name
            else:
                edge[key] = step(row)  # type: ignore[operator]
        edges.append(edge)
    return edges
