"""Compile a validated query into a plan (hub.api.compiled.plans).

A plan is made once per (document, operation, role schema, @skip/@include values) and then
serves every request with that shape. Fields are collected with graphql-core's own
`collect_fields` and `collect_subfields`, so response keys, their order, fragments, aliases and
@skip/@include come out exactly as the normal executor collects them.

What compiles: root list and lookup fields (`listing`, `lookup_of`) and, below them, the fields
whose resolvers say what they read (hub.api.compiled.shapes). A root field that does not is
delegated to graphql-core; anything else raises NotCompilable with a short reason, and the
operation runs on the normal executor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import ColumnProperty
from strawberry.types.field import StrawberryField

from hub.api.compiled.plans import (
    GRID_ID,
    ID,
    TYPENAME,
    Argued,
    Computed,
    Delegated,
    EdgesPlan,
    FirstOfPlan,
    Leaf,
    LeafList,
    ListPlan,
    LookupPlan,
    Many,
    NotCompilable,
    ObjectPlan,
    Option,
    PageInfoPlan,
    Plan,
    Related,
    RootStep,
    Step,
    Typename,
    Wrapped,
)
from hub.api.compiled.shapes import (
    FirstOf,
    GlobalId,
    ListOf,
    LookupOf,
    Reads,
    ToMany,
    ToOne,
    Wraps,
    shape_of,
)
from hub.api.ids import to_global_id
from hub.authz.profile import Profile
from hub.authz.scopes import SCOPED_TYPES

DEFINITION = "strawberry-definition"


def compile_plan(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDetails],
    variables: VariableValues,
    profile: Profile,
) -> Plan:
    if operation.operation is not OperationType.QUERY:
        raise NotCompilable(operation.operation.value)
    return _Compiler(schema, operation, fragments, variables, profile).plan()


def fragments_of(definitions: Sequence[Any]) -> dict[str, FragmentDetails]:
    """The document's fragments as collect_fields takes them. Fragments with variables of
    their own (an experimental syntax) are not compiled."""
    found: dict[str, FragmentDetails] = {}
    for definition in definitions:
        if getattr(definition, "type_condition", None) is None:
            continue
        if definition.variable_definitions:
            raise NotCompilable("fragment variables")
        found[definition.name.value] = FragmentDetails(definition)
    return found


class _Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDetails],
        variables: VariableValues,
        profile: Profile,
    ) -> None:
        self.schema = schema
        self.operation = operation
        self.fragments = fragments
        self.variables = variables
        self.profile = profile

    def plan(self) -> Plan:
        query = self.schema.query_type
        assert query is not None
        collected = collect_fields(
            self.schema, self.fragments, self.variables, query, self.operation
        )
        if collected.new_defer_usages:
            raise NotCompilable("@defer")
        roots: list[tuple[str, RootStep]] = []
        delegated: list[FieldNode] = []
        for key, details in collected.grouped_field_set.items():
            try:
                roots.append((key, self._root(query, details)))
            except NotCompilable as refused:
                roots.append((key, Delegated(refused.reason)))
                delegated += [detail.node for detail in details]
        reasons = [root.reason for _, root in roots if isinstance(root, Delegated)]
        if reasons and all(isinstance(root, Delegated | Typename) for _, root in roots):
            raise NotCompilable(reasons[0])  # nothing left to compile: all to graphql-core
        return Plan(roots, _related_columns(roots), self._document(delegated) if reasons else None)

    def _document(self, fields: list[FieldNode]) -> DocumentNode:
        """An operation of the delegated root fields alone. Their @skip/@include were decided
        for the variables this plan is for, and the plan key holds those values."""
        operation = OperationDefinitionNode(
            operation=OperationType.QUERY,
            name=self.operation.name,
            variable_definitions=self.operation.variable_definitions,
            directives=(),
            selection_set=SelectionSetNode(selections=tuple(fields)),
        )
        fragments = tuple(detail.definition for detail in self.fragments.values())
        return DocumentNode(definitions=(operation, *fragments))

    def _root(self, query: GraphQLObjectType, details: list[FieldDetails]) -> RootStep:
        name = details[0].node.name.value
        if name == TYPENAME:
            return Typename(query.name)
        if name.startswith("__"):
            raise NotCompilable("introspection")
        definition = query.fields[name]
        strawberry_field = _strawberry_field(definition)
        shape = shape_of(strawberry_field.metadata) if strawberry_field else None
        if isinstance(shape, ListOf) and strawberry_field is not None:
            return self._list(definition, strawberry_field, shape, details)
        if isinstance(shape, LookupOf) and strawberry_field is not None:
            return self._lookup(definition, strawberry_field, shape, details)
        raise NotCompilable(f"field Query.{name}")

    def _subfields(
        self, type_: GraphQLObjectType, details: list[FieldDetails]
    ) -> dict[str, list[FieldDetails]]:
        for detail in details:
            if detail.defer_usage is not None or detail.fragment_variable_values is not None:
                raise NotCompilable("@defer or fragment variables")
        collected = collect_subfields(
            self.schema, self.fragments, self.variables, self.operation, type_, details
        )
        if collected.new_defer_usages:
            raise NotCompilable("@defer")
        return collected.grouped_field_set

    def _list(
        self,
        definition: GraphQLField,
        strawberry_field: StrawberryField,
        shape: ListOf,
        details: list[FieldDetails],
    ) -> ListPlan:
        connection = get_named_type(definition.type)
        assert isinstance(connection, GraphQLObjectType)
        node_type = get_named_type(connection.fields["nodes"].type)
        assert isinstance(node_type, GraphQLObjectType)
        model = SCOPED_TYPES.get(node_type.name)
        if model is None:
            raise NotCompilable(f"field Query.{details[0].node.name.value}")
        parts: list[tuple[str, str | PageInfoPlan | EdgesPlan | ObjectPlan]] = []
        for key, fields in self._subfields(connection, details).items():
            name = fields[0].node.name.value
            if name in (TYPENAME, "totalCount"):
                parts.append((key, name))
            elif name == "pageInfo":
                parts.append((key, self._page_info(connection.fields[name], fields)))
            elif name == "edges":
                parts.append((key, self._edges(connection.fields[name], fields, node_type, model)))
            elif name == "nodes":
                parts.append((key, self._object(node_type, fields, model)))
            else:  # pragma: no cover - a Connection has no other fields
                raise NotCompilable(f"field {connection.name}.{name}")
        argued = Argued(definition, details[0].node, strawberry_field)
        literal = not any(_has_variable(a.value) for a in details[0].node.arguments or ())
        return ListPlan(argued, shape.builder, model, parts, connection.name, literal)

    def _lookup(
        self,
        definition: GraphQLField,
        strawberry_field: StrawberryField,
        shape: LookupOf,
        details: list[FieldDetails],
    ) -> LookupPlan:
        found = get_named_type(definition.type)
        model = SCOPED_TYPES.get(found.name)
        if model is None or not isinstance(found, GraphQLObjectType):
            raise NotCompilable(f"field Query.{details[0].node.name.value}")
        argued = Argued(definition, details[0].node, strawberry_field)
        literal = not any(_has_variable(a.value) for a in details[0].node.arguments or ())
        plan = self._object(found, details, model)
        return LookupPlan(argued, shape.builder, model, plan, literal)

    def _page_info(self, definition: GraphQLField, details: list[FieldDetails]) -> PageInfoPlan:
        page_info = get_named_type(definition.type)
        assert isinstance(page_info, GraphQLObjectType)
        steps = [
            (key, fields[0].node.name.value)
            for key, fields in self._subfields(page_info, details).items()
        ]
        return PageInfoPlan(steps, page_info.name)

    def _edges(
        self,
        definition: GraphQLField,
        details: list[FieldDetails],
        node_type: GraphQLObjectType,
        model: type[Any],
    ) -> EdgesPlan:
        edge = get_named_type(definition.type)
        assert isinstance(edge, GraphQLObjectType)
        steps: list[tuple[str, str | ObjectPlan]] = []
        for key, fields in self._subfields(edge, details).items():
            name = fields[0].node.name.value
            if name == "node":
                steps.append((key, self._object(node_type, fields, model)))
            else:
                steps.append((key, name))
        return EdgesPlan(steps, edge.name)

    # --- objects ---------------------------------------------------------------------------

    def _object(
        self, type_: GraphQLObjectType, details: list[FieldDetails], model: type[Any] | None
    ) -> ObjectPlan:
        plan = ObjectPlan(type_.name, model)
        if model is not None:
            # Its key: relations and the access log name rows by it, and a row selected for
            # `__typename` alone still needs a column.
            plan.columns.add(ID if _has_column(model, ID) else _primary_key(model))
        for key, fields in self._subfields(type_, details).items():
            name = fields[0].node.name.value
            if name == TYPENAME:
                plan.steps.append((key, Typename(type_.name)))
                continue
            plan.steps.append((key, self._field(plan, type_, type_.fields[name], fields)))
        if model is not None and plan.audited and _has_column(model, GRID_ID):
            plan.columns.add(GRID_ID)
        return plan

    def _field(
        self,
        plan: ObjectPlan,
        parent: GraphQLObjectType,
        definition: GraphQLField,
        details: list[FieldDetails],
    ) -> Step:
        field = _Field.of(parent, definition, details, self.profile)
        shape = shape_of(field.strawberry.metadata)
        if definition.args and not isinstance(shape, Reads):
            raise NotCompilable(f"field {field.key}")
        if shape is None and field.strawberry.base_resolver is None:
            attribute = field.strawberry.python_name
            self._needs(plan, field.key, attribute)
            if field.lists == 1 and field.serialize is not None and field.mask is None:
                return LeafList(
                    field.serialize,
                    field.non_null,
                    field.items_non_null,
                    audit=field.audit,
                    column=attribute,
                )
            return field.leaf(attribute)
        if isinstance(shape, GlobalId):
            plan.columns.add(ID)
            return field.leaf(ID, partial(to_global_id, parent.name))
        if isinstance(shape, Reads):
            for column in shape.columns:
                self._needs(plan, field.key, column)
            return self._computed(field)
        if field.mask:  # the policy masks scalars only
            raise NotCompilable(f"field {field.key}")
        if isinstance(shape, ToOne):
            self._needs(plan, field.key, shape.column)
            return self._to_one(field, shape)
        if isinstance(shape, FirstOf):
            for choice in shape.options:
                self._needs(plan, field.key, choice.column)
            return self._first_of(field, shape)
        if isinstance(shape, ToMany):
            plan.columns.add(ID)
            return self._to_many(field, shape)
        raise NotCompilable(f"field {field.key}")

    def _computed(self, field: _Field) -> Step:
        """A `reads` field: its resolver, called with the row."""
        if not _root_first(field.strawberry):
            raise NotCompilable(f"field {field.key}")
        argued = Argued(field.definition, field.details[0].node, field.strawberry)
        if field.serialize is not None and field.lists == 0:
            return Leaf(None, field.serialize, field.non_null, argued, field.mask, field.audit)
        if field.mask is None and field.serialize is not None and field.lists == 1:
            return LeafList(
                field.serialize, field.non_null, field.items_non_null, argued, audit=field.audit
            )
        if field.mask is None and isinstance(field.named, GraphQLObjectType) and not field.lists:
            child = self._object(field.named, field.details, None)
            if not child.needs_io and not child.audited:
                return Computed(argued, child, field.non_null, field.audit)
        raise NotCompilable(f"field {field.key}")

    def _to_one(self, field: _Field, shape: ToOne) -> Related:
        target = SCOPED_TYPES.get(field.named.name)
        if target is None or not isinstance(field.named, GraphQLObjectType) or field.lists:
            raise NotCompilable(f"field {field.key}")
        child = self._object(field.named, field.details, target)
        return Related(shape.column, target, child, field.non_null, field.audit)

    def _to_many(self, field: _Field, shape: ToMany) -> Step:
        if field.lists != 1:
            raise NotCompilable(f"field {field.key}")
        if field.serialize is not None:
            return LeafList(
                field.serialize,
                field.non_null,
                field.items_non_null,
                loader=shape.loader,
                audit=field.audit,
            )
        if not isinstance(field.named, GraphQLObjectType):
            raise NotCompilable(f"field {field.key}")
        # Loaders return ORM objects: every attribute is there, nothing to select.
        child = self._object(field.named, field.details, None)
        return Many(shape.loader, child, field.non_null, field.items_non_null, field.audit)

    def _first_of(self, field: _Field, shape: FirstOf) -> FirstOfPlan:
        union = field.named
        if not isinstance(union, GraphQLUnionType) or field.lists:
            raise NotCompilable(f"field {field.key}")
        members = {member.name: member for member in union.types}
        options: list[Option | Wrapped] = []
        for choice in shape.options:
            if isinstance(choice, Wraps):
                type_name = choice.build.__strawberry_definition__.name  # type: ignore[attr-defined]
                member = members.get(type_name)
                child = self._object(member, field.details, None) if member else None
                if child is not None and (child.needs_io or child.audited):
                    raise NotCompilable(f"field {field.key}")
                options.append(Wrapped(choice.column, choice.build, choice.argument, child))
                continue
            assert choice.type_name is not None
            model = SCOPED_TYPES[choice.type_name]
            member = members.get(choice.type_name)
            child = self._object(member, field.details, model) if member else None
            options.append(Option(choice.column, model, child))
        return FirstOfPlan(options, field.non_null, field.audit)

    def _needs(self, plan: ObjectPlan, key: str, column: str) -> None:
        """`plan` reads `column` of its source: a real column of its model, selected."""
        if plan.model is None:
            return
        if not _has_column(plan.model, column):
            raise NotCompilable(f"field {key}")
        plan.columns.add(column)


@dataclass(frozen=True, slots=True)
class _Field:
    """One selected field of an object, with what every kind of step needs to know of it."""

    key: str  # "Type.field", as the policy names it
    definition: GraphQLField
    details: list[FieldDetails]
    strawberry: StrawberryField
    named: GraphQLNamedType
    serialize: Callable[[Any], Any] | None  # the type's own, for scalars and enums
    non_null: bool
    lists: int  # how many lists deep
    items_non_null: bool
    mask: str | None
    audit: str | None

    @classmethod
    def of(
        cls,
        parent: GraphQLObjectType,
        definition: GraphQLField,
        details: list[FieldDetails],
        profile: Profile,
    ) -> _Field:
        key = f"{parent.name}.{details[0].node.name.value}"
        strawberry_field = _strawberry_field(definition)
        if strawberry_field is None:
            raise NotCompilable(f"field {key}")
        named = get_named_type(definition.type)
        lists = _list_depth(definition.type)
        mask = profile.masks.get(key)
        return cls(
            key=key,
            definition=definition,
            details=details,
            strawberry=strawberry_field,
            named=named,
            serialize=(
                named.serialize if isinstance(named, GraphQLScalarType | GraphQLEnumType) else None
            ),
            non_null=isinstance(definition.type, GraphQLNonNull),
            lists=lists,
            items_non_null=lists > 0 and isinstance(_item_type(definition.type), GraphQLNonNull),
            mask=mask,
            # Masked fields are noted like sensitive ones (hub.api.roles records both).
            audit=key if key in profile.sensitive or mask else None,
        )

    def leaf(self, column: str, convert: Callable[[Any], Any] | None = None) -> Leaf:
        if self.serialize is None or self.lists:
            raise NotCompilable(f"field {self.key}")
        return Leaf(column, self.serialize, self.non_null, None, self.mask, self.audit, convert)


def _root_first(strawberry_field: StrawberryField) -> bool:
    """Whether the field's resolver is a plain function of its row (the first parameter) and
    its arguments: no `info`, no `self`, not async. Compiled execution calls it so."""
    resolver = strawberry_field.base_resolver
    if resolver is None or strawberry_field.is_async:
        return False
    if resolver.info_parameter is not None or resolver.self_parameter is not None:
        return False
    root = resolver.parent_parameter or resolver.root_parameter
    function = cast(Callable[..., Any], resolver.wrapped_func)
    first = next(iter(inspect.signature(function).parameters), None)
    return root is not None and root.name == first


def _has_variable(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_has_variable(item) for item in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_variable(field.value) for field in value.fields)
    return False


def _strawberry_field(definition: GraphQLField) -> StrawberryField | None:
    found = (definition.extensions or {}).get(DEFINITION)
    return found if isinstance(found, StrawberryField) else None


def _primary_key(model: type[Any]) -> str:
    return str(sa_inspect(model).primary_key[0].key)


def _has_column(model: type[Any], name: str) -> bool:
    attribute = getattr(model, name, None)
    return isinstance(getattr(attribute, "property", None), ColumnProperty)


def _list_depth(type_: Any) -> int:
    depth = 0
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        if isinstance(type_, GraphQLList):
            depth += 1
        type_ = type_.of_type
    return depth


def _item_type(type_: Any) -> Any:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    assert isinstance(type_, GraphQLList)
    return type_.of_type


def _nested(plan: ObjectPlan) -> Iterator[tuple[ObjectPlan, bool]]:
    """`plan` and every plan below it, each with whether its rows are read by id."""
    for _, step in plan.steps:
        children: list[tuple[ObjectPlan | None, bool]] = []
        if isinstance(step, Related):
            children = [(step.plan, True)]
        elif isinstance(step, FirstOfPlan):
            children = [(o.plan, isinstance(o, Option)) for o in step.options]
        elif isinstance(step, Computed | Many):
            children = [(step.plan, False)]
        for child, by_id in children:
            if child is not None:
                yield child, by_id
                yield from _nested(child)


def _related_columns(roots: list[tuple[str, RootStep]]) -> dict[type[Any], tuple[str, ...]]:
    wanted: dict[type[Any], set[str]] = {}
    for _, root in roots:
        if isinstance(root, Typename | Delegated):
            continue
        for node_plan in root.node_plans():
            for plan, by_id in _nested(node_plan):
                if by_id and plan.model is not None:
                    wanted.setdefault(plan.model, set()).update(plan.columns)
    return {model: tuple(sorted(names)) for model, names in wanted.items()}
