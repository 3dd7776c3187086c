"""The whole default policy as a table: every (role, field), (role, input field), (role,
operation) and (role, scoped type), checked three ways against each other:

- Casbin's own `enforce()` over policies/model.conf and policies/policy.csv: the reference;
- the compiled profiles (hub.authz.profile), which the hub consults instead of Casbin;
- each role's GraphQL schema (hub.api.roles), read back through introspection, which is what a
  client can actually ask for.

No database: the registry compiles the default policy from the files.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    get_introspection_query,
    get_named_type,
    graphql_sync,
)
from graphql.pyutils import Undefined
from strawberry import Schema

from hub.api.registry import SchemaRegistry
from hub.api.roles import NEEDS_NOTHING, POLICY_INPUTS, POLICY_TYPES, REQUIRES, catalogue_of
from hub.api.schema import build_schema
from hub.authz.policy import CALL, READ, READ_MASKED, ROWS_PREFIX, SET, Policy
from hub.authz.profile import Level, Profile
from hub.config import DEFAULT_POLICY_DIR, Settings

POLICY = Policy.from_directory(DEFAULT_POLICY_DIR)
ENFORCER = POLICY.enforcer()
FULL: GraphQLSchema = build_schema()._schema
CATALOGUE = catalogue_of(FULL)
REGISTRY = SchemaRegistry(build_schema(), Settings(policy_dir=DEFAULT_POLICY_DIR))
ROLES = POLICY.subjects

# Arguments every list and lookup has; they reveal nothing about a row by themselves (the rows
# are scoped, ids are opaque), so REQUIRES does not need to list them.
STRUCTURAL_ARGUMENTS = frozenset({"first", "after", "last", "before", "id"})
# Arguments that hold an input object or enum whose every field or value is checked on its own.
COMPOSITE_ARGUMENTS = frozenset({"filter", "orderBy"})


@cache
def casbin_level(role: str, name: str) -> Level:
    if ENFORCER.enforce(role, name, READ):
        return Level.FULL
    if ENFORCER.enforce(role, name, READ_MASKED):
        return Level.MASKED
    return Level.HIDDEN


def profile(role: str) -> Profile:
    return REGISTRY.profile_for(role)


def role_schema(role: str) -> Schema:
    return REGISTRY.schema_for(role)


# --- introspection, read as a client reads it ---------------------------------------------------


@dataclass(frozen=True)
class Introspected:
    raw: dict[str, Any]
    types: dict[str, dict[str, Any]]

    def has_type(self, name: str) -> bool:
        return name in self.types

    def fields(self, type_name: str) -> dict[str, dict[str, Any]]:
        found = self.types.get(type_name) or {}
        return {f["name"]: f for f in found.get("fields") or ()}

    def input_fields(self, type_name: str) -> dict[str, dict[str, Any]]:
        found = self.types.get(type_name) or {}
        return {f["name"]: f for f in found.get("inputFields") or ()}

    def enum_values(self, type_name: str) -> set[str]:
        found = self.types.get(type_name) or {}
        return {v["name"] for v in found.get("enumValues") or ()}

    def args(self, type_name: str, field_name: str) -> set[str]:
        field = self.fields(type_name).get(field_name)
        return {a["name"] for a in field["args"]} if field else set()

    def names(self) -> set[str]:
        """Every name a client can use: types, fields, arguments, input fields, enum values."""
        found: set[str] = set()
        for name, t in self.types.items():
            found.add(name)
            for f in (t.get("fields") or []) + (t.get("inputFields") or []):
                found.add(f["name"])
                found.update(a["name"] for a in f.get("args") or ())
            found.update(v["name"] for v in t.get("enumValues") or ())
        return found


@cache
def introspect(role: str) -> Introspected:
    result = graphql_sync(role_schema(role)._schema, get_introspection_query(descriptions=True))
    assert result.errors is None, result.errors
    assert result.data is not None
    types = {t["name"]: t for t in result.data["__schema"]["types"]}
    return Introspected(raw=result.data, types=types)


def named(type_ref: dict[str, Any]) -> str:
    while type_ref.get("ofType") is not None:
        type_ref = type_ref["ofType"]
    return str(type_ref["name"])


def requires_met(role: str, key: str) -> bool:
    return all(casbin_level(role, need) is Level.FULL for need in REQUIRES.get(key, ()))


# --- (a) the compiled profile is Casbin's answer ----------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_profile_agrees_with_enforce(role: str) -> None:
    compiled = profile(role)
    disagreements: list[tuple[str, str, object, object]] = []
    for name in CATALOGUE.field_objects():
        if compiled.level(name) is not casbin_level(role, name):
            disagreements.append((name, "read", compiled.level(name), casbin_level(role, name)))
    for name in CATALOGUE.input_objects():
        if (name in compiled.inputs) != ENFORCER.enforce(role, name, SET):
            disagreements.append((name, SET, name in compiled.inputs, None))
    for name in CATALOGUE.operations:
        if (name in compiled.operations) != ENFORCER.enforce(role, name, CALL):
            disagreements.append((name, CALL, name in compiled.operations, None))
    for type_name, scopes in CATALOGUE.scoped.items():
        for scope in scopes:
            granted = scope in compiled.scopes.get(type_name, frozenset())
            if granted != ENFORCER.enforce(role, type_name, ROWS_PREFIX + scope):
                disagreements.append((type_name, ROWS_PREFIX + scope, granted, None))
    assert not disagreements


@pytest.mark.parametrize("role", ROLES)
def test_masks_and_purposes_follow_the_g2_lines(role: str) -> None:
    compiled = profile(role)
    for name, level in compiled.fields.items():
        classes = POLICY.classes.get(name, frozenset())
        if level is Level.MASKED:
            (kind,) = [c.removeprefix("mask:") for c in classes if c.startswith("mask:")]
            assert compiled.masks[name] == kind
        else:
            assert name not in compiled.masks
        assert (name in compiled.sensitive) == ("sensitive" in classes), name


def test_the_table_covers_every_role_and_object() -> None:
    """Nothing slips past the table: it sees every subject and a sensible number of objects."""
    assert set(ROLES) == set(REGISTRY.roles)
    assert len(list(CATALOGUE.field_objects())) > 100
    assert len(CATALOGUE.operations) > 15
    assert set(CATALOGUE.types) == {t for t in POLICY_TYPES if t in FULL.type_map}


# --- (b) the role's schema shows exactly the visible fields -------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_schema_fields_follow_the_policy(role: str) -> None:
    seen = introspect(role)
    problems = []
    for type_name, field_names in CATALOGUE.types.items():
        full_type = FULL.type_map[type_name]
        assert isinstance(full_type, GraphQLObjectType)
        present = seen.fields(type_name)
        for field_name in field_names:
            key = f"{type_name}.{field_name}"
            level = casbin_level(role, key)
            field = present.get(field_name)
            if field is not None:
                if level is Level.HIDDEN:
                    problems.append(f"{key} is hidden but in the schema")
                if not requires_met(role, key):
                    problems.append(f"{key} is in the schema without what it requires")
                if level is Level.MASKED:
                    original_non_null = isinstance(
                        full_type.fields[field_name].type, GraphQLNonNull
                    )
                    kind = field["type"]["kind"]
                    if (
                        named(field["type"]) != "String"
                        or (kind == "NON_NULL") != original_non_null
                    ):
                        problems.append(f"{key} is masked but typed {field['type']}")
                continue
            if level is Level.HIDDEN or not seen.has_type(type_name):
                continue
            target = get_named_type(full_type.fields[field_name].type).name
            if requires_met(role, key) and seen.has_type(target):
                problems.append(f"{key} is {level} and its type is there, but it is missing")
        if not seen.has_type(type_name):
            visible = [
                f for f in field_names if casbin_level(role, f"{type_name}.{f}") is not Level.HIDDEN
            ]
            if (
                visible
                and "Node" in {i.name for i in full_type.interfaces}
                and seen.fields("Query").get("node")
            ):
                problems.append(
                    f"{type_name} has visible fields {visible} and node(id:) but is gone"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_every_visible_type_is_reachable_from_the_roots(role: str) -> None:
    """A type in a role's schema can be reached by some query: nothing dangles unexplained."""
    schema = role_schema(role)._schema
    reachable = {path.target for path in paths_from_roots(schema)}
    for name in CATALOGUE.types:
        if name in schema.type_map:
            assert name in reachable, name


# --- how to reach a type: a query prefix down to it -------------------------------------------


@dataclass(frozen=True)
class Path:
    target: str
    prefix: str
    suffix: str

    def query(self, selection: str) -> str:
        return f"{self.prefix}{selection}{self.suffix}"


def literal(type_: Any) -> str:
    """A valid literal of an input type, for validation only."""
    if isinstance(type_, GraphQLNonNull):
        return literal(type_.of_type)
    if isinstance(type_, GraphQLList):
        return f"[{literal(type_.of_type)}]"
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        required = [
            f"{name}: {literal(f.type)}"
            for name, f in type_.fields.items()
            if isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
        ]
        return "{" + ", ".join(required) + "}"
    return {
        "Int": "1",
        "Float": "1.5",
        "Boolean": "true",
        "DateTime": '"2024-01-01T00:00:00+08:00"',
        "Date": '"2000-01-01"',
    }.get(type_.name, '"x"')


def call(name: str, field: Any) -> str:
    required = [
        f"{arg_name}: {literal(arg.type)}"
        for arg_name, arg in field.args.items()
        if isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined
    ]
    return f"{name}({', '.join(required)})" if required else name


def paths_from_roots(schema: GraphQLSchema) -> Iterator[Path]:
    """The shortest way to every composite type, from each root (breadth first)."""
    roots = [
        ("query Q { ", schema.query_type),
        ("mutation M { ", schema.mutation_type),
        ("subscription S { ", schema.subscription_type),
    ]
    found: set[str] = set()
    queue: deque[Path] = deque()
    for opening, root in roots:
        if root is not None and root.name not in found:
            found.add(root.name)
            queue.append(Path(root.name, opening, " }"))
    while queue:
        path = queue.popleft()
        yield path
        parent = schema.type_map[path.target]
        steps: list[tuple[str, str]] = []
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            for name, field in parent.fields.items():
                target = get_named_type(field.type)
                if isinstance(target, GraphQLObjectType | GraphQLInterfaceType | GraphQLUnionType):
                    steps.append((target.name, call(name, field) + " { "))
        if isinstance(parent, GraphQLInterfaceType | GraphQLUnionType):
            for possible in schema.get_possible_types(parent):
                steps.append((possible.name, f"... on {possible.name} {{ "))
        for target_name, opening in steps:
            if target_name not in found:
                found.add(target_name)
                queue.append(Path(target_name, path.prefix + opening, " }" + path.suffix))


@cache
def paths(role: str) -> dict[str, Path]:
    return {path.target: path for path in paths_from_roots(role_schema(role)._schema)}


# --- hidden fields fail validation, and say nothing ---------------------------------------------


def messages(result: Any) -> list[str]:
    return [error.message for error in result.errors or ()]


@pytest.mark.parametrize("role", ROLES)
async def test_naming_a_hidden_field_fails_like_a_field_that_does_not_exist(role: str) -> None:
    schema = role_schema(role)
    checked = 0
    for type_name, field_names in CATALOGUE.types.items():
        hidden = [f for f in field_names if casbin_level(role, f"{type_name}.{f}") is Level.HIDDEN]
        if not hidden:
            continue
        path = paths(role).get(type_name)
        if path is None:
            # The type is not in the schema at all: naming it fails as an unknown type.
            result = await schema.execute(f"query Q {{ ... on {type_name} {{ {hidden[0]} }} }}")
            assert messages(result) == [f"Unknown type '{type_name}'."]
            checked += 1
            continue
        for field_name in hidden:
            # One at a time, beside a field that does not exist anywhere: both fail alike.
            result = await schema.execute(path.query(f"{field_name} nosuchfield"))
            assert messages(result) == [
                f"Cannot query field '{field_name}' on type '{type_name}'.",
                f"Cannot query field 'nosuchfield' on type '{type_name}'.",
            ], (type_name, field_name)
            assert all(
                e.extensions == {"code": "GRAPHQL_VALIDATION_FAILED"} for e in result.errors or ()
            )
            checked += 1
    assert checked > 0  # every default role has hidden fields


@pytest.mark.parametrize("role", ROLES)
async def test_a_misspelt_visible_field_gets_no_suggestion(role: str) -> None:
    """graphql-core would answer "Did you mean 'healthNotes'?": a way to list hidden names."""
    schema = role_schema(role)
    for type_name, path in paths(role).items():
        for field_name in list(introspect(role).fields(type_name))[:3]:
            result = await schema.execute(path.query(field_name[:-1]))
            assert result.errors, (type_name, field_name)
            assert not any("Did you mean" in m for m in messages(result))


# --- (c) operations, inputs, filters, sort keys and aggregates -------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_operations_are_there_exactly_when_allowed(role: str) -> None:
    seen = introspect(role)
    problems = []
    for operation in CATALOGUE.operations:
        root, name = operation.split(".")
        allowed = bool(ENFORCER.enforce(role, operation, CALL))
        field = seen.fields(root).get(name)
        if field is not None and not allowed:
            problems.append(f"{operation} is in the schema but not allowed")
        if field is not None and not seen.has_type(named(field["type"])):
            problems.append(f"{operation} returns a type that is not in the schema")
        if field is None and allowed:
            problems.append(f"{operation} is allowed but missing")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_input_fields_are_there_exactly_when_settable(role: str) -> None:
    seen = introspect(role)
    problems = []
    for input_name in POLICY_INPUTS:
        present = seen.input_fields(input_name)
        input_type = FULL.type_map[input_name]
        assert isinstance(input_type, GraphQLInputObjectType)
        for field_name in input_type.fields:
            key = f"{input_name}.{field_name}"
            settable = bool(ENFORCER.enforce(role, key, SET))
            if field_name in present and not settable:
                problems.append(f"{key} is in the schema but not settable")
            if field_name not in present and settable and seen.has_type(input_name):
                problems.append(f"{key} is settable but missing")
        input_fields = input_type.fields
        if any(ENFORCER.enforce(role, o, CALL) for o in operations_taking(input_name)) and any(
            ENFORCER.enforce(role, f"{input_name}.{f}", SET) for f in input_fields
        ):
            assert seen.has_type(input_name), f"{role} may call with {input_name}"
    assert not problems, "\n".join(problems)


def operations_taking(input_name: str) -> list[str]:
    found = []
    for root in (FULL.mutation_type, FULL.subscription_type):
        assert root is not None
        for name, field in root.fields.items():
            if any(get_named_type(a.type).name == input_name for a in field.args.values()):
                found.append(f"{root.name}.{name}")
    return found


def present_in(seen: Introspected, key: str) -> bool | None:
    """Whether a REQUIRES key is in the schema; None when its container is not."""
    owner, _, rest = key.partition(".")
    if "(" in rest:
        field_name, argument = rest.rstrip(")").split("(")
        if field_name not in seen.fields(owner):
            return None
        return argument in seen.args(owner, field_name)
    full_type = FULL.type_map[owner]
    if not seen.has_type(owner):
        return None
    if isinstance(full_type, GraphQLInputObjectType):
        return rest in seen.input_fields(owner)
    if isinstance(full_type, GraphQLEnumType):
        return rest in seen.enum_values(owner)
    return rest in seen.fields(owner)


@pytest.mark.parametrize("role", ROLES)
def test_filters_sort_keys_and_aggregates_need_full_reads(role: str) -> None:
    seen = introspect(role)
    problems = []
    for key, needs in REQUIRES.items():
        present = present_in(seen, key)
        met = requires_met(role, key)
        if present and not met:
            levels = {need: casbin_level(role, need).value for need in needs}
            problems.append(f"{key} is in the schema although {levels}")
        if present is False and met and not _dropped_for_its_type(seen, key):
            problems.append(f"{key} is allowed but missing")
    assert not problems, "\n".join(problems)


def _dropped_for_its_type(seen: Introspected, key: str) -> bool:
    """An output field whose own type is gone (EventCount.grid without Grid) may go too."""
    owner, _, rest = key.partition(".")
    full_type = FULL.type_map[owner]
    if isinstance(full_type, GraphQLObjectType) and "(" not in rest:
        return not seen.has_type(get_named_type(full_type.fields[rest].type).name)
    return False


@pytest.mark.parametrize("role", ROLES)
def test_masked_fields_can_be_neither_filtered_nor_sorted(role: str) -> None:
    masked = {n for n in CATALOGUE.field_objects() if casbin_level(role, n) is Level.MASKED}
    seen = introspect(role)
    for key, needs in REQUIRES.items():
        if masked & set(needs):
            assert not present_in(seen, key), (key, masked & set(needs))


@pytest.mark.parametrize(
    ("role", "key"),
    [
        ("health", "ResidentFilter.idNumber"),
        ("grid_worker", "ResidentFilter.idNumber"),
        ("civil_affairs", "ResidentFilter.idNumber"),
        ("grid_worker", "ResidentSortField.BIRTH_DATE"),  # masked to it
        ("dispatcher", "ResidentSortField.NAME"),
        ("dispatcher", "ResidentFilter.bornAfter"),
        ("public", "EventFilter.departmentCode"),
        ("public", "EventFilter.overdue"),  # the public does not read deadlines
        # Nothing the published figures withhold can be counted another way (issue 13).
        ("public", "Stats.eventCounts"),
        ("public", "Stats.eventTimes"),
        ("public", "EventDimension.GRID"),
        ("public", "EventFilter.category"),
        ("public", "EventFilter.inGrid"),
        ("public", "EventFilter.reportedBefore"),
        ("environment", "Stats.residentTagCounts"),
        ("public_security", "Stats.residentTagCounts"),
        ("connector:health", "ResidentFilter.inGrid"),
    ],
)
def test_named_filters_and_sort_keys_are_absent(role: str, key: str) -> None:
    assert not present_in(introspect(role), key)


@pytest.mark.parametrize(
    ("role", "key"),
    [
        ("public_security", "ResidentFilter.idNumber"),
        ("public_security", "ResidentSortField.BIRTH_DATE"),
        ("health", "ResidentFilter.tag"),
        ("health", "Stats.residentTagCounts"),
        ("dispatcher", "EventFilter.departmentCode"),
        ("grid_worker", "EventDimension.GRID"),
        ("public", "Stats.publishedEvents"),
    ],
)
def test_named_filters_and_sort_keys_are_present(role: str, key: str) -> None:
    assert present_in(introspect(role), key)


# --- (d) public and types --------------------------------------------------------------------


def test_public_sees_no_resident_at_all() -> None:
    seen = introspect("public")
    text = json.dumps(seen.raw, ensure_ascii=False)
    assert not any(name.startswith("Resident") for name in seen.types)
    for word in ("Resident", "idNumber", "healthNotes", "householdCode", "reporter"):
        assert word not in text, word
    assert not seen.has_type("Member")
    assert "Mutation" in seen.types and set(seen.fields("Mutation")) == {"submitFeedback"}


@pytest.mark.parametrize("role", ROLES)
def test_introspection_names_no_hidden_field(role: str) -> None:
    """Hidden field names appear nowhere in the introspection, descriptions included, unless the
    same name is visible elsewhere in the role's schema (`phone` of a member and a resident)."""
    seen = introspect(role)
    text = json.dumps(seen.raw, ensure_ascii=False)
    visible = seen.names()
    hidden = {
        n.split(".")[1] for n in CATALOGUE.field_objects() if casbin_level(role, n) is Level.HIDDEN
    }
    # Distinctive names only: "status" or "name" also occur in plain English descriptions.
    distinctive = {n for n in hidden - visible if any(c.isupper() for c in n)}
    assert not [n for n in distinctive if f'"{n}"' in text or f"`{n}`" in text]


# --- (e) nothing in the full schema escapes REQUIRES -----------------------------------------


def test_every_filter_sort_key_and_argument_is_accounted_for() -> None:
    listed = set(REQUIRES) | NEEDS_NOTHING
    stale = listed - set(_keys_of_full_schema())
    assert not stale, f"REQUIRES/NEEDS_NOTHING name what does not exist: {stale}"
    unlisted = sorted(set(_checked_keys()) - listed)
    assert not unlisted, f"say in hub/api/roles.py what these reveal: {unlisted}"


def _keys_of_full_schema() -> Iterator[str]:
    for t in FULL.type_map.values():
        if t.name.startswith("__"):
            continue
        if isinstance(t, GraphQLObjectType):
            for name, field in t.fields.items():
                yield f"{t.name}.{name}"
                yield from (f"{t.name}.{name}({a})" for a in field.args)
        elif isinstance(t, GraphQLInputObjectType):
            yield from (f"{t.name}.{f}" for f in t.fields)
        elif isinstance(t, GraphQLEnumType):
            yield from (f"{t.name}.{v}" for v in t.values)


def _checked_keys() -> Iterator[str]:
    """What must be listed: every field of a filter, every value of an enum that orders or
    groups (as `*Order.field`, or an argument of its own), and every argument of a query or
    output field beyond paging, ids and the filter/orderBy objects checked field by field."""
    enums: set[str] = set()
    for t in FULL.type_map.values():
        if isinstance(t, GraphQLInputObjectType) and t.name.endswith("Filter"):
            yield from (f"{t.name}.{f}" for f in t.fields)
        if isinstance(t, GraphQLInputObjectType) and t.name.endswith("Order"):
            enums.update(get_named_type(f.type).name for f in t.fields.values())
    for t in FULL.type_map.values():
        if not isinstance(t, GraphQLObjectType) or t.name.startswith("__"):
            continue
        if t.name == "Mutation":
            continue  # gated by `call` and the input fields by `set`
        for name, field in t.fields.items():
            for argument, arg in field.args.items():
                if argument in STRUCTURAL_ARGUMENTS or argument in COMPOSITE_ARGUMENTS:
                    continue
                target = get_named_type(arg.type)
                if isinstance(target, GraphQLEnumType):
                    enums.add(target.name)
                else:
                    yield f"{t.name}.{name}({argument})"
    for enum in sorted(enums):
        enum_type = FULL.type_map[enum]
        assert isinstance(enum_type, GraphQLEnumType)
        yield from (f"{enum}.{v}" for v in enum_type.values)
