"""zh-CN first, English second: the pages' words, from `messages/*.toml`.

Each message is a table with a `zh` and an `en` entry; the files are split by page area. A
message missing in one language, or defined twice, fails at load (and so in the tests).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from functools import partial
from importlib import resources
from typing import Any

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
_KEYS = {"zh-CN": "zh", "en": "en"}

# A message in one language: t(key, **values), as the templates and the pages' views call it.
Translate = Callable[..., str]


class Catalogue:
    def __init__(self, messages: Mapping[str, Mapping[str, str]]) -> None:
        self._messages = messages

    @classmethod
    def load(cls) -> Catalogue:
        messages: dict[str, dict[str, str]] = {}
        folder = resources.files("hub.web") / "messages"
        for entry in sorted(folder.iterdir(), key=lambda item: item.name):
            if not entry.name.endswith(".toml"):
                continue
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
            for key, texts in _flatten(data):
                if key in messages:
                    raise ValueError(f"{entry.name}: message {key!r} is defined twice")
                if set(texts) != {"zh", "en"}:
                    raise ValueError(f"{entry.name}: message {key!r} needs exactly zh and en")
                messages[key] = texts
        return cls(messages)

    def text(self, language: str, key: str, **values: Any) -> str:
        try:
            template = self._messages[key][_KEYS.get(language, "zh")]
        except KeyError:
            raise KeyError(f"no message {key!r}") from None
        return template.format(**values) if values else template

    def translator(self, language: str) -> Translate:
        return partial(self.text, language)

    def has(self, key: str) -> bool:
        return key in self._messages

    def keys(self) -> list[str]:
        return list(self._messages)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, dict[str, str]]]:
    found: list[tuple[str, dict[str, str]]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            found.append((name, dict(value)))
        elif isinstance(value, dict):
            found.extend(_flatten(value, name + "."))
        else:
            raise ValueError(f"message {name!r} must be a table of zh and en")
    return found


def pick_language(query_value: str | None, cookie_value: str | None) -> str:
    """`?lang=` wins, then the visitor's earlier choice (a cookie), then zh-CN."""
    for candidate in (query_value, cookie_value):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT_LANGUAGE
