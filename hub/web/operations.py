"""The pages' persisted operations: the only GraphQL the pages may run.

Each `operations/*.graphql` file holds one named operation; its name is how a page asks for it.
The pages cannot run anything else, and a test validates every operation against the schema of
each role that runs it, so a policy change that breaks a page fails CI rather than the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

from graphql import OperationDefinitionNode, parse

PACKAGE = "hub.web"
DIRECTORY = "operations"


@dataclass(frozen=True, slots=True)
class PersistedOperation:
    name: str
    document: str


class UnknownOperation(KeyError):
    pass


class Operations:
    def __init__(self, operations: dict[str, PersistedOperation]) -> None:
        self._by_name = operations

    @classmethod
    def load(cls) -> Operations:
        found: dict[str, PersistedOperation] = {}
        for entry in sorted(
            (resources.files(PACKAGE) / DIRECTORY).iterdir(), key=lambda item: item.name
        ):
            if not entry.name.endswith(".graphql"):
                continue
            document = entry.read_text(encoding="utf-8")
            names = [
                definition.name.value
                for definition in parse(document).definitions
                if isinstance(definition, OperationDefinitionNode) and definition.name
            ]
            if len(names) != 1:
                raise ValueError(f"{entry.name}: expected exactly one named operation")
            name = names[0]
            if name in found:
                raise ValueError(f"{entry.name}: operation {name} is defined twice")
            found[name] = PersistedOperation(name, document)
        return cls(found)

    def __getitem__(self, name: str) -> PersistedOperation:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownOperation(name) from None

    def __iter__(self) -> Iterator[PersistedOperation]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)
