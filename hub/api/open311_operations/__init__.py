"""Open311's persisted GraphQL operations, each cut to the schema of the role that runs it.

Each `*.graphql` file here holds one named operation: everything Open311 could show or filter
by. Before an operation runs as a role, `Open311Operations.prepare` removes from it what that
role's schema does not offer (fields, arguments, input fields, and what is left empty by their
removal) and the fields the caller names in `drop` (those that need a stated purpose, say), then
the variable definitions nothing uses any more. What remains is valid for the role by
construction, and it says what the adapter may show (`shown`) and which parameters the role
may use (`variables`). A policy change is a new role schema, so it reaches Open311 by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    REMOVE,
    ArgumentNode,
    DocumentNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLSchema,
    InlineFragmentNode,
    ObjectFieldNode,
    OperationDefinitionNode,
    TypeInfo,
    TypeInfoVisitor,
    VariableNode,
    Visitor,
    parse,
    print_ast,
    validate,
    visit,
)

PACKAGE = "hub.api.open311_operations"


@dataclass(frozen=True, slots=True)
class Prepared:
    """An operation as one role may run it."""

    name: str
    document: str
    # The variables the cut operation still uses: a parameter whose variable is gone is one the
    # role may not use.
    variables: frozenset[str]
    # The fields it still selects, as `Type.field`.
    shown: frozenset[str]
    # Nothing is left to run (the role's schema offers none of its root fields, or not all that
    # they require).
    empty: bool
    schema: GraphQLSchema

    def enum_values(self, type_name: str) -> frozenset[str]:
        """The values an enum has in the role's schema (none if the role lacks the enum)."""
        found = self.schema.get_type(type_name)
        return frozenset(found.values) if isinstance(found, GraphQLEnumType) else frozenset()


class _Cut(Visitor):
    """Removes what the schema does not offer, and what `drop` names."""

    def __init__(self, type_info: TypeInfo, drop: frozenset[str]) -> None:
        super().__init__()
        self.type_info = type_info
        self.drop = drop
        self.shown: set[str] = set()

    def _key(self, node: FieldNode) -> str | None:
        parent = self.type_info.get_parent_type()
        return None if parent is None else f"{parent.name}.{node.name.value}"

    def enter_field(self, node: FieldNode, *_: Any) -> Any:
        key = self._key(node)
        if key is None or self.type_info.get_field_def() is None or key in self.drop:
            return REMOVE
        return None

    def leave_field(self, node: FieldNode, *_: Any) -> Any:
        if node.selection_set is not None and not node.selection_set.selections:
            return REMOVE
        key = self._key(node)
        if key is not None:
            self.shown.add(key)
        return None

    def enter_argument(self, node: ArgumentNode, *_: Any) -> Any:
        return REMOVE if self.type_info.get_argument() is None else None

    def enter_object_field(self, node: ObjectFieldNode, *_: Any) -> Any:
        return REMOVE if self.type_info.get_input_type() is None else None

    def leave_inline_fragment(self, node: InlineFragmentNode, *_: Any) -> Any:
        return REMOVE if not node.selection_set.selections else None


class _Used(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.names.add(node.name.value)


def cut(name: str, document: DocumentNode, schema: GraphQLSchema, drop: frozenset[str]) -> Prepared:
    type_info = TypeInfo(schema)
    visitor = _Cut(type_info, drop)
    pruned = visit(document, TypeInfoVisitor(type_info, visitor))
    (operation,) = [d for d in pruned.definitions if isinstance(d, OperationDefinitionNode)]
    used = _Used()
    visit(operation.selection_set, used)
    kept = tuple(
        definition
        for definition in operation.variable_definitions or ()
        if definition.variable.name.value in used.names
    )
    operation = OperationDefinitionNode(
        operation=operation.operation,
        name=operation.name,
        variable_definitions=kept,
        directives=operation.directives,
        selection_set=operation.selection_set,
    )
    final = DocumentNode(definitions=(operation,))
    empty = not operation.selection_set.selections or bool(validate(schema, final))
    return Prepared(
        name=name,
        document="" if empty else print_ast(final),
        variables=frozenset() if empty else frozenset(used.names),
        shown=frozenset() if empty else frozenset(visitor.shown),
        empty=empty,
        schema=schema,
    )


class Open311Operations:
    def __init__(self, documents: dict[str, DocumentNode]) -> None:
        self._documents = documents
        # Per role schema (a new policy compiles new ones, and the old ones go with it).
        self._prepared: WeakKeyDictionary[GraphQLSchema, dict[tuple[str, frozenset[str]], Prepared]]
        self._prepared = WeakKeyDictionary()

    @classmethod
    def load(cls) -> Open311Operations:
        documents: dict[str, DocumentNode] = {}
        for entry in sorted(resources.files(PACKAGE).iterdir(), key=lambda item: item.name):
            if not entry.name.endswith(".graphql"):
                continue
            document = parse(entry.read_text(encoding="utf-8"))
            names = [
                definition.name.value
                for definition in document.definitions
                if isinstance(definition, OperationDefinitionNode) and definition.name
            ]
            if len(names) != 1 or len(document.definitions) != 1:
                raise ValueError(f"{entry.name}: expected exactly one named operation")
            documents[names[0]] = document
        return cls(documents)

    def __iter__(self) -> Any:
        return iter(self._documents)

    def prepare(self, name: str, schema: GraphQLSchema, drop: frozenset[str]) -> Prepared:
        """Operation `name` cut to `schema`, without the fields `drop` names."""
        cache = self._prepared.setdefault(schema, {})
        key = (name, drop)
        if key not in cache:
            cache[key] = cut(name, self._documents[name], schema, drop)
        return cache[key]
