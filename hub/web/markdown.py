"""Notice bodies: Markdown in, HTML out that can carry nothing executable.

Two layers, each enough on its own against script:

1. markdown-it-py with the CommonMark preset plus tables, linkify off, and raw HTML dropped:
   it is parsed (so that it is recognised) and then taken out of the token stream, a whole HTML
   block (up to its blank line) and each inline tag, with the text inside an inline script,
   style or similar element. A `<script>` in a body shows neither as markup nor as text.
   `javascript:`/`vbscript:`/`file:` link targets are refused as links.
2. nh3 (ammonia) over what it produced, with an allow-list of tags and attributes, only
   http, https and mailto (or same-site relative) link targets, and
   rel="noopener noreferrer nofollow" on every link.

Tables come without their column alignment (markdown-it writes it as a style attribute, which
the CSP would refuse anyway), each in a focusable `div.table-scroll`, so that a wide table
scrolls by itself on a phone instead of widening the page.

Images: only same-site ones (a path such as `/static/map.png`) are kept. The CSP (`img-src 'self'
data:`) would block any other anyway, and a remote image would tell its host who reads which
notice. Markdown naming any other image shows its alt text instead; data: URLs are dropped too.

Headings move one level down (`#` becomes h2): the page's only h1 is the notice's title.
"""

from __future__ import annotations

import re
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
        "div",
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
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "div": {"class", "tabindex"},
}
# The only values the attributes of a div may have: the table wrapper's.
TABLE_WRAPPER = {"class": "table-scroll", "tabindex": "0"}
# Inline elements whose content is not text for the reader; dropped with their tags.
HIDDEN_CONTENT = re.compile(
    r"<(script|style|textarea|title|xmp|iframe|noembed|noframes|noscript|template|svg|math)"
    r"(?=[\s/>])",
    re.IGNORECASE,
)
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"


def same_site_path(url: str) -> bool:
    """A path on this site: starts with one slash, not `//host` nor `/\\host` (which browsers
    read as another host)."""
    return url.startswith("/") and not url.startswith(("//", "/\\")) and "\\" not in url


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    if tag == "img" and name == "src":
        return value if same_site_path(value) else None
    if tag == "div":
        return value if TABLE_WRAPPER.get(name) == value else None
    return value


def _drop_raw_html(state: StateCore) -> None:
    kept: list[Token] = []
    for token in state.tokens:
        if token.type == "html_block":
            continue
        if token.type == "inline" and token.children:
            token.children = _without_inline_html(token.children)
        kept.append(token)
    state.tokens = _without_empty_paragraphs(kept)


def _without_inline_html(children: list[Token]) -> list[Token]:
    kept: list[Token] = []
    index = 0
    while index < len(children):
        token = children[index]
        index += 1
        if token.type != "html_inline":
            kept.append(token)
            continue
        opened = HIDDEN_CONTENT.match(token.content)
        if opened is None:
            continue
        # What stands between a script's tags is code, not words: it goes with them, up to the
        # closing tag. Without one only the opening tag goes (the rest is the author's text).
        closing = re.compile(rf"</{opened.group(1)}\s*>", re.IGNORECASE)
        end = next(
            (
                at
                for at in range(index, len(children))
                if children[at].type == "html_inline" and closing.fullmatch(children[at].content)
            ),
            None,
        )
        if end is not None:
            index = end + 1
    return kept


def _without_empty_paragraphs(tokens: list[Token]) -> list[Token]:
    """Without the paragraphs nothing is left in (one that held only HTML tags)."""
    kept: list[Token] = []
    index = 0
    while index < len(tokens):
        window = tokens[index : index + 3]
        if [t.type for t in window] == ["paragraph_open", "inline", "paragraph_close"] and all(
            child.type in ("softbreak", "hardbreak")
            or (child.type == "text" and not child.content.strip())
            for child in window[1].children or []
        ):
            index += 3
            continue
        kept.append(tokens[index])
        index += 1
    return kept


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


def _table_open(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    # Focusable, so that a keyboard can scroll it too.
    return '<div class="table-scroll" tabindex="0">\n' + str(
        renderer.renderToken(tokens, idx, options, env)
    )


def _table_close(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return str(renderer.renderToken(tokens, idx, options, env)) + "</div>\n"


def _nothing(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return ""


def _parser() -> MarkdownIt:
    # html: True only so that raw HTML is recognised, to be dropped (_drop_raw_html); with it off
    # markdown-it would show the tags as text.
    parser = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False})
    parser.enable("table")
    parser.core.ruler.push("drop_raw_html", _drop_raw_html)
    parser.core.ruler.push("demote_headings", _demote_headings)
    parser.add_render_rule("image", _image)
    parser.add_render_rule("table_open", _table_open)
    parser.add_render_rule("table_close", _table_close)
    # Never reached (_drop_raw_html took them out); should a token get through, it is nothing.
    parser.add_render_rule("html_block", _nothing)
    parser.add_render_rule("html_inline", _nothing)
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
