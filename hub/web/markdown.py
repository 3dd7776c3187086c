"""Notice bodies: Markdown in, HTML out that can carry nothing executable.

Two layers, each enough on its own against script:

1. markdown-it-py with the CommonMark preset, raw HTML off and linkify off: a `<script>` in a
   body is text, and `javascript:`/`vbscript:`/`file:` link targets are refused as links.
2. nh3 (ammonia) over what it produced, with an allow-list of tags and attributes, only
   http, https and mailto (or same-site relative) link targets, and
   rel="noopener noreferrer nofollow" on every link.

Images: only same-site ones (a path such as `/static/map.png`) are kept. The CSP (`img-src 'self'
data:`) would block any other anyway, and a remote image would tell its host who reads which
notice. Markdown naming any other image shows its alt text instead; data: URLs are dropped too.

Headings move one level down (`#` becomes h2): the page's only h1 is the notice's title.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup

TAGS = frozenset(
    {
        "a",
        "blockquote",
        "br",
        "code",
        "em",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "img",
        "li",
        "ol",
        "p",
        "pre",
        "strong",
        "ul",
    }
)
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"


def same_site_path(url: str) -> bool:
    """A path on this site: starts with one slash, not `//host` nor `/\\host` (which browsers
    read as another host)."""
    return url.startswith("/") and not url.startswith(("//", "/\\")) and "\\" not in url


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    if tag == "img" and name == "src":
        return value if same_site_path(value) else None
    return value


def _demote_headings(state: StateCore) -> None:
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"


def _image(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = token.attrGet("src")
    if isinstance(src, str) and same_site_path(src):
        return str(renderer.image(tokens, idx, options, env))
    # Another site's image (or data:): its alt text stands in for it.
    return escapeHtml(renderer.renderInlineAsText(token.children or [], options, env))


def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.core.ruler.push("demote_headings", _demote_headings)
    parser.add_render_rule("image", _image)
    return parser


_PARSER = _parser()
_CLEANER = nh3.Cleaner(
    tags=set(TAGS),
    clean_content_tags={"script", "style"},
    attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
    attribute_filter=_keep_attribute,
    strip_comments=True,
    link_rel=LINK_REL,
    url_schemes=set(URL_SCHEMES),
)


def sanitise(html: str) -> str:
    """`html` with only the allowed tags, attributes and link targets left."""
    return _CLEANER.clean(html)


def render(source: str) -> Markup:
    """A notice body's Markdown as sanitised HTML, safe to place in a page or a feed."""
    # Markup: trusted from here on, because it was sanitised just now.
    return Markup(sanitise(_PARSER.render(source)))
