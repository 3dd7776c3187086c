"""A generator of list queries for the compiled-execution tests, written from a role's own schema.

Every query it writes is one the compiler is meant to handle: root list fields (with literal or
variable page sizes, orderings, filters and cursors), connections selected in every way
(edges, cursors, nodes, pageInfo, totalCount, __typename), and below them any field of the
role's schema: relations, unions, computed objects with arguments, lists, aliases, inline and
named fragments, fields selected twice, and @skip/@include with literals and variables.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    get_named_type,
    get_nullable_type,
)
from hypothesis import strategies as st

# The root lists compiled execution answers (fields with `listing` metadata), and the type each
# one's cursors name.
LISTS = {
    "residents": "Resident",
    "events": "Event",
    "grids": "Grid",
    "members": "Member",
    "notices": "Notice",
    "departments": "Department",
    "feedbackList": "Feedback",
    "auditLog": "AuditRecord",
    "policyVersions": "PolicyVersion",
    "emergencyGrants": "EmergencyGrant",
    "syncRuns": "SyncRun",
    "syncQuarantine": "SyncQuarantineItem",
    "syncConflicts": "SyncConflict",
    "webhookDeliveries": "WebhookDelivery",
}
# The root lookups, and the arguments each takes (one at a time).
LOOKUPS = {
    "resident": ("id",),
    "event": ("id", "code"),
    "grid": ("id", "code"),
    "notice": ("id",),
    "member": ("id",),
    "department": ("code",),
    "feedback": ("id", "trackingCode"),
}
# A cursor value before every row, by ordering (the default ordering of grids is PATH).
FIRST_VALUES: dict[str, Any] = {
    "ID": 0,
    "SEQ": 0,
    "VERSION": 0,
    "NAME": "",
    "CODE": "",
    "PATH": "",
    "BIRTH_DATE": "1900-01-01",
}
EARLY = "2000-01-01T00:00:00+00:00"
MAX_DEPTH = 4


@dataclass
class Values:
    """Argument values worth drawing: codes that exist, crafted cursors, enum values."""

    grids: list[str]
    departments: list[str]
    cursors: list[str]  # crafted ones, mostly not valid for the list they go to
    tags: list[str]
    id_numbers: list[str]
    # Lookup values by type name: global ids and codes of rows in and out of every scope.
    ids: dict[str, list[str]]
    codes: dict[str, list[str]]


@dataclass
class ListQueryWriter:
    schema: GraphQLSchema
    values: Values
    draw: Callable[[Any], Any]
    fragments: dict[str, str] = field(default_factory=dict)
    variables: dict[str, tuple[str, Any]] = field(default_factory=dict)  # name -> (type, value)
    systems: dict[str, str] = field(default_factory=dict)  # Type.field -> its arguments
    names: Any = field(default_factory=lambda: itertools.count(1))

    def document(self) -> tuple[str, dict[str, Any]]:
        query = self.schema.query_type
        assert query is not None
        present = [name for name in LISTS if name in query.fields]
        chosen = self.draw(st.lists(st.sampled_from(present), min_size=1, max_size=2))
        # The same list twice needs an alias: with other arguments it would not validate.
        roots = [
            self.root(query, name, aliased=name in chosen[:i]) for i, name in enumerate(chosen)
        ]
        if self.draw(st.integers(0, 5)) == 0:
            roots.append("__typename")
        if self.draw(st.integers(0, 5)) == 0:
            # A root field the compiler leaves to graphql-core, beside the ones it answers.
            others = ['__type(name: "Query") { name }', *(["me { role }"] * ("me" in query.fields))]
            roots.append(f"{self.fresh('d')}: {self.draw(st.sampled_from(others))}")
        declared = ", ".join(f"${n}: {t}" for n, (t, _) in self.variables.items())
        head = f"query Q({declared})" if declared else "query Q"
        text = f"{head} {{ {' '.join(roots)} }} " + " ".join(self.fragments.values())
        return text, {n: v for n, (_, v) in self.variables.items()}

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.names)}"

    def variable(self, type_name: str, value: Any) -> str:
        name = self.fresh("v")
        self.variables[name] = (type_name, value)
        return f"${name}"

    # --- roots and connections -----------------------------------------------------------

    def root(self, query: GraphQLObjectType, name: str, *, aliased: bool) -> str:
        definition = query.fields[name]
        alias = f"{self.fresh('r')}: " if aliased or self.draw(st.booleans()) else ""
        args = self.list_arguments(name, definition)
        connection = get_named_type(definition.type)
        assert isinstance(connection, GraphQLObjectType)
        return f"{alias}{name}{args} {{ {self.connection(connection)} }}"

    def lookup(self, query: GraphQLObjectType, name: str, *, aliased: bool) -> str:
        definition = query.fields[name]
        alias = f"{self.fresh('r')}: " if aliased or self.draw(st.booleans()) else ""
        target = get_named_type(definition.type)
        usable = [a for a in LOOKUPS[name] if a in definition.args]
        argument = self.draw(st.sampled_from(usable))
        pool = self.values.ids if argument == "id" else self.values.codes
        value = self.draw(st.sampled_from(pool.get(target.name) or ["none"]))
        if self.draw(st.booleans()):
            value_text = self.variable("ID!" if argument == "id" else "String!", value)
        else:
            value_text = json.dumps(value)
        return f"{alias}{name}({argument}: {value_text}) {{ {self.selection(target, 1)} }}"

    def list_arguments(self, name: str, definition: Any) -> str:
        given = []
        size = self.draw(st.integers(0, 4))
        if self.draw(st.booleans()):
            given.append(f"first: {self.variable('Int', size)}")
        elif self.draw(st.integers(0, 3)) or "last" not in definition.args:
            given.append(f"first: {size}")
        else:
            given.append(f"last: {size}")
        ordering = {"grids": "PATH", "auditLog": "SEQ", "policyVersions": "VERSION"}.get(name, "ID")
        if "orderBy" in definition.args and self.draw(st.booleans()):
            order = get_named_type(definition.args["orderBy"].type)
            assert isinstance(order, GraphQLInputObjectType)
            fields = get_named_type(order.fields["field"].type)
            assert isinstance(fields, GraphQLEnumType)
            ordering = self.draw(st.sampled_from(sorted(fields.values)))
            direction = self.draw(st.sampled_from(["ASC", "DESC"]))
            given.append(f"orderBy: {{ field: {ordering}, direction: {direction} }}")
        if "filter" in definition.args and self.draw(st.integers(0, 2)) == 0:
            given.append(f"filter: {self.filter(definition.args['filter'].type)}")
        if self.draw(st.integers(0, 3)) == 0:
            # Hypothesis favours small draws: the valid cursor is the likely one.
            if self.draw(st.integers(0, 4)) < 4:
                tag, value = f"{LISTS[name]}.{ordering}", FIRST_VALUES.get(ordering, EARLY)
                cursor = base64.urlsafe_b64encode(json.dumps([tag, value, 0]).encode()).decode()
            else:
                cursor = self.draw(st.sampled_from(self.values.cursors))
            given.append(f"after: {self.variable('String', cursor.rstrip('='))}")
        return f"({', '.join(given)})"

    def filter(self, type_: Any) -> str:
        filter_type = get_named_type(type_)
        assert isinstance(filter_type, GraphQLInputObjectType)
        names = sorted(filter_type.fields)
        if not names:
            return "{}"
        chosen = self.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
        parts = []
        for name in chosen:
            given = filter_type.fields[name].type
            value = self.filter_value(name, get_named_type(given))
            if isinstance(get_nullable_type(given), GraphQLList):
                value = f"[{value}]"
            parts.append(f"{name}: {value}")
        return "{ " + ", ".join(parts) + " }"

    def filter_value(self, name: str, target: Any) -> str:
        if isinstance(target, GraphQLEnumType):
            return str(self.draw(st.sampled_from(sorted(target.values))))
        if name == "idNumber":
            return json.dumps(self.draw(st.sampled_from(self.values.id_numbers)))
        if name in ("inGrid", "parentCode", "appliesTo"):
            return json.dumps(self.draw(st.sampled_from(self.values.grids)))
        if name == "departmentCode":
            return json.dumps(self.draw(st.sampled_from(self.values.departments)))
        if name == "tag":
            return json.dumps(self.draw(st.sampled_from(self.values.tags)))
        if name == "level":
            return json.dumps(self.draw(st.sampled_from(["grid", "community", "street"])))
        if target.name == "Boolean":
            return "true"
        if target.name == "Date":
            return '"1960-01-01"'
        if target.name == "DateTime":
            return '"2000-01-01T00:00:00+08:00"'
        return json.dumps(self.draw(st.sampled_from(["MARKER", "", "花"])), ensure_ascii=False)

    def connection(self, connection: GraphQLObjectType) -> str:
        node = get_named_type(connection.fields["nodes"].type)
        assert isinstance(node, GraphQLObjectType)
        parts = self.draw(
            st.lists(
                st.sampled_from(["edges", "nodes", "pageInfo", "totalCount", "__typename"]),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
        chosen = []
        for part in parts:
            if part == "edges":
                edge = ["node { " + self.selection(node, 1) + " }"]
                if self.draw(st.booleans()):
                    edge.append("cursor")
                if self.draw(st.integers(0, 3)) == 0:
                    edge.append("__typename")
                chosen.append("edges { " + " ".join(edge) + " }")
            elif part == "nodes":
                chosen.append("nodes { " + self.selection(node, 1) + " }")
            elif part == "pageInfo":
                fields = self.draw(
                    st.lists(
                        st.sampled_from(
                            ["hasNextPage", "hasPreviousPage", "startCursor", "endCursor"]
                        ),
                        min_size=1,
                        max_size=4,
                        unique=True,
                    )
                )
                chosen.append("pageInfo { " + " ".join(fields) + " }")
            else:
                chosen.append(part)
        return " ".join(chosen)

    # --- objects -------------------------------------------------------------------------

    def selection(self, type_: Any, depth: int) -> str:
        if isinstance(type_, GraphQLUnionType):
            members = sorted(type_.types, key=lambda t: t.name)
            picked = self.draw(st.lists(st.sampled_from(members), max_size=3, unique=True))
            parts = ["__typename"]
            parts += [f"... on {m.name} {{ {self.fields_of(m, depth)} }}" for m in picked]
            return " ".join(parts)
        assert isinstance(type_, GraphQLObjectType | GraphQLInterfaceType)
        shape = self.draw(st.integers(0, 7))
        if shape == 0 and isinstance(type_, GraphQLObjectType):
            name = self.fresh("F")
            self.fragments[name] = (
                f"fragment {name} on {type_.name} {{ {self.fields_of(type_, depth)} }}"
            )
            return f"...{name} " + self.fields_of(type_, depth)
        if shape == 1:
            return f"... on {type_.name} {{ {self.fields_of(type_, depth)} }} __typename"
        if shape == 2 and "id" in type_.fields:
            return f"... on Node {{ id }} {self.fields_of(type_, depth)}"
        return self.fields_of(type_, depth)

    def fields_of(self, type_: Any, depth: int) -> str:
        names = sorted(type_.fields)
        if depth >= MAX_DEPTH:
            names = [n for n in names if is_leaf(type_.fields[n].type)]
        if not names:
            return "__typename"
        chosen = self.draw(st.lists(st.sampled_from(names), min_size=1, max_size=4))
        return " ".join(self.field(type_, name, depth) for name in chosen)

    def field(self, parent: Any, name: str, depth: int) -> str:
        definition = parent.fields[name]
        alias = f"{self.fresh('a')}: " if self.draw(st.integers(0, 4)) == 0 else ""
        args = ""
        if "system" in definition.args:
            # One choice per field and document: the same field twice with other arguments
            # would not validate.
            key = f"{parent.name}.{name}"
            if key not in self.systems:
                system = self.draw(st.sampled_from(["", "WGS84", "GCJ02"]))
                if system and not self.draw(st.booleans()):
                    system = self.variable("CoordinateSystem", system)
                self.systems[key] = f"(system: {system})" if system else ""
            args = self.systems[key]
        directive = self.directive()
        target = get_named_type(definition.type)
        head = f"{alias}{name}{args}{directive}"
        if isinstance(target, GraphQLScalarType | GraphQLEnumType):
            return head
        return f"{head} {{ {self.selection(target, depth + 1)} }}"

    def directive(self) -> str:
        roll = self.draw(st.integers(0, 9))
        if roll == 0:
            return f" @include(if: {self.variable('Boolean!', self.draw(st.booleans()))})"
        if roll == 1:
            # A nullable variable with a default may stand where Boolean! is expected.
            return f" @skip(if: {self.variable('Boolean = true', self.draw(st.booleans()))})"
        if roll == 2:
            return " @skip(if: false)"
        if roll == 3:
            return " @include(if: false)"
        return ""


def is_leaf(type_: Any) -> bool:
    return isinstance(get_named_type(type_), GraphQLScalarType | GraphQLEnumType)


@st.composite
def list_queries(
    draw: Callable[[Any], Any], schema: GraphQLSchema, values: Values
) -> tuple[str, dict[str, Any]]:
    return ListQueryWriter(schema, values, draw).document()
