"""Bar charts as inline SVG, drawn on the server: no script, no style attribute (the pages' CSP
allows neither), only SVG presentation attributes.

A chart is an image for sighted readers; the page puts the same figures in a table beside it,
and the SVG carries its own title and description for screen readers. A withheld figure has
no bar (its length would give the number away) and shows the withheld mark instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Narrow, so that the text stays legible when a phone shrinks the chart to its width; the
# stylesheet lets it grow to 30rem on wider screens.
WIDTH = 400
ROW_HEIGHT = 28
BAR_HEIGHT = 18
FONT_SIZE = 14
# Room for the value printed after the longest bar.
VALUE_WIDTH = 80
MIN_LABEL_WIDTH = 56
MAX_LABEL_WIDTH = 170
BAR_FILL = "#0b5394"
INK = "#1a1a1a"
MUTED = "#4a4a4a"


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    # None: no bar (withheld, or nothing to measure).
    value: float | None
    # What is printed after the bar: the formatted value, or the withheld mark.
    text: str
    # Names the figure (the table cell carries the same key), for tests and styling.
    key: str
    withheld: bool = False


def bar_chart(*, chart_id: str, title: str, description: str, bars: Sequence[Bar]) -> Markup:
    """A horizontal bar chart, one bar a row, scaled to the largest published value."""
    label_width = _label_width(bars)
    room = WIDTH - label_width - VALUE_WIDTH
    largest = max(
        (bar.value for bar in bars if bar.value is not None and not bar.withheld), default=0.0
    )
    height = ROW_HEIGHT * max(len(bars), 1) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'font-size="{FONT_SIZE}">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
    ]
    for index, bar in enumerate(bars):
        top = 4 + index * ROW_HEIGHT
        middle = top + BAR_HEIGHT / 2
        key = escape(bar.key)
        parts.append(
            f'<text x="{label_width - 8}" y="{middle:g}" text-anchor="end" '
            f'dominant-baseline="central" fill="{INK}">{escape(bar.label)}</text>'
        )
        if bar.withheld or bar.value is None:
            kind = "withheld" if bar.withheld else "value"
            parts.append(
                f'<text class="{kind}" data-cell="{key}" x="{label_width + 4}" y="{middle:g}" '
                f'dominant-baseline="central" fill="{MUTED}">{escape(bar.text)}</text>'
            )
            continue
        length = room * bar.value / largest if largest > 0 else 0.0
        parts.append(
            f'<rect class="bar" data-cell="{key}" x="{label_width}" y="{top}" '
            f'width="{length:.1f}" height="{BAR_HEIGHT}" fill="{BAR_FILL}"/>'
        )
        parts.append(
            f'<text class="value" data-cell="{key}" x="{label_width + length + 6:.1f}" '
            f'y="{middle:g}" dominant-baseline="central" fill="{INK}">{escape(bar.text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _label_width(bars: Sequence[Bar]) -> int:
    """Room for the longest label: a CJK character is about a font size wide, Latin about
    half that (the SVG is drawn without measuring text, so this errs on the wide side)."""
    widest = max((_text_width(bar.label) for bar in bars), default=0)
    return int(min(MAX_LABEL_WIDTH, max(MIN_LABEL_WIDTH, widest + 16)))


def _text_width(text: str) -> float:
    return sum(FONT_SIZE if ord(ch) >= 0x2E80 else FONT_SIZE * 0.6 for ch in text)
