"""The connector kinds that read from a source, by the name definitions use."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any

from hub.connectors.records import Source, SourceContext

# kind -> the module implementing it: each has `open_source(ctx)` and `check_options(options)`.
# Imported when used, so that loading a definition does not import httpx or openpyxl.
_MODULES = {
    "file": "hub.connectors.files",
    "rest": "hub.connectors.rest",
    "open311": "hub.connectors.open311_pull",
    "webhook": "hub.connectors.webhooks",
}


def _module(kind: str) -> Any:
    return import_module(_MODULES[kind])


def open_source(kind: str, context: SourceContext) -> Source:
    source: Source = _module(kind).open_source(context)
    return source


def check_options(kind: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(option, problem) pairs for a definition's [source] table; empty when it is usable."""
    checker = getattr(_module(kind), "check_options", None)
    return list(checker(options)) if checker is not None else []
