"""Statistical disclosure control for published tables of counts: cell suppression.

A published table of counts with margins is a set of additive relations a reader can check: each
row's cells add up to the row total, each column's to the column total, the row totals and the
column totals to the grand total. Hiding a small count is not enough when the reader can
subtract the published cells of its row from the published row total. So:

1. Primary suppression: every figure n with 0 < n < k is withheld, margins included. A margin
   below k withholds its whole line, since every nonzero cell of that line is at most the
   margin and so below k as well.
2. Zero is published. An empty cell tells nobody anything about a person, readers expect it
   (a table of stars where nothing happened would be unreadable), and a hidden zero would break
   the guarantee below: it could only move one way.
3. Complementary suppression, line by line, until nothing changes: in every line (row, column
   and the two margin lines) that withholds anything,
   - with its total published, at least two cells must be withheld and together count at least
     k (else the reader learns their sum is small), otherwise the smallest published nonzero
     cell is withheld too (the total itself when no such cell is left);
   - with its total withheld, at least one cell must be withheld as well, otherwise the
     published cells would add up to the total.
4. The lines' rule is a heuristic: a figure can still be pinned by combining several lines (in
   a two-way table, a withheld cell whose only links to the rest form a bridge). So the
   published relations are then solved exactly (`_pinned`, Gaussian elimination over the
   rationals), and while any withheld figure is determined by them, one more figure is withheld
   to break that; when none helps, every nonzero figure is withheld.

Withheld figures are never zero. In a two-way table an undetermined one lies on a cycle of
withheld figures, so it can move by one either way along it: another non-negative integer table
agrees with every published figure and differs in it. tests/test_disclosure.py checks that by
brute force, for single tables and for up to three tables sharing their row totals.

Averages follow their counts: `disclose_means` publishes a mean only when the count it is taken
over survives the same rules over the vector of counts it belongs to, so all-but-one published
means plus the overall mean cannot give the last one away.

Everything here is deterministic: ties are broken by the order the figures were given in (after
preferring, among equally small cells, one that settles another line as well).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

# --- the general engine: figures and the additive lines that relate them --------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One relation a reader can check: `cells` add up to `total`."""

    cells: tuple[Hashable, ...]
    total: Hashable


def suppress(values: Mapping[Hashable, int], lines: Sequence[Line], k: int) -> frozenset[Hashable]:
    """The figures to withhold, out of `values`, so that none below k is published and none
    withheld can be worked out from the published ones through `lines`."""
    if k < 1:
        raise ValueError("the minimum count k must be at least 1")
    for key, value in values.items():
        if value < 0:
            raise ValueError(f"count {key!r} is negative")
    for line in lines:
        for key in (*line.cells, line.total):
            if key not in values:
                raise ValueError(f"line names an unknown figure {key!r}")
        if sum(values[c] for c in line.cells) != values[line.total]:
            raise ValueError(f"cells do not add up to their total {line.total!r}")
    order = {key: index for index, key in enumerate(values)}
    hidden = {key for key, value in values.items() if 0 < value < k}
    while True:
        _complete_lines(values, lines, k, hidden, order)
        pinned = _pinned(lines, hidden, order)
        if not pinned:
            return frozenset(hidden)
        unpinning = _unpinning(values, lines, hidden, order, pinned[0])
        if unpinning is None:
            # Nothing single helps: withhold every nonzero figure. Each nonzero cell then sits
            # on a cycle through its margins and the grand total, none of them zero.
            hidden.update(key for key, value in values.items() if value > 0)
            return frozenset(hidden)
        hidden.add(unpinning)


def _complete_lines(
    values: Mapping[Hashable, int],
    lines: Sequence[Line],
    k: int,
    hidden: set[Hashable],
    order: Mapping[Hashable, int],
) -> None:
    """Rule 3 of the module's docstring, over every line, until no line asks for more."""
    lines_of: dict[Hashable, list[Line]] = defaultdict(list)
    for line in lines:
        for key in (*line.cells, line.total):
            lines_of[key].append(line)

    def settles_another(key: Hashable, line: Line) -> bool:
        return any(
            other is not line and _unsettled(values, other, k, hidden) for other in lines_of[key]
        )

    changed = True
    while changed:
        changed = False
        for line in lines:
            if not _unsettled(values, line, k, hidden):
                continue
            more = _partner(values, line, hidden, order, settles_another)
            if more is not None:
                hidden.add(more)
                changed = True


def _unsettled(values: Mapping[Hashable, int], line: Line, k: int, hidden: set[Hashable]) -> bool:
    """Whether the line gives a withheld figure away (or its withheld cells' small sum)."""
    withheld = [c for c in line.cells if c in hidden]
    if line.total in hidden:
        return not withheld
    return bool(withheld) and (len(withheld) < 2 or sum(values[c] for c in withheld) < k)


def _partner(
    values: Mapping[Hashable, int],
    line: Line,
    hidden: set[Hashable],
    order: Mapping[Hashable, int],
    settles_another: Callable[[Hashable, Line], bool],
) -> Hashable | None:
    """The next figure an unsettled line withholds: its smallest published nonzero cell. Of
    equal ones, one whose other line wants a partner too (one figure then settles two lines,
    where the first in order might start a new chain), then the first in input order."""
    published = [c for c in line.cells if c not in hidden and values[c] > 0]
    if published:
        smallest = min(values[c] for c in published)
        tied = [c for c in published if values[c] == smallest]
        return min(tied, key=lambda c: (not settles_another(c, line), order[c]))
    # Only zeros are left to hide behind, and zeros stay published: withhold the total.
    return line.total if line.total not in hidden else None


def _pinned(
    lines: Sequence[Line], hidden: set[Hashable], order: Mapping[Hashable, int]
) -> list[Hashable]:
    """The withheld figures that the published figures determine exactly, in input order.

    With the published figures substituted, the lines are equations over the withheld ones. A
    withheld figure is determined exactly when its unit vector lies in the equations' row space,
    which in reduced row echelon form means: it is a pivot whose row has no other entry.
    """
    unknowns = sorted(hidden, key=order.__getitem__)
    column = {key: index for index, key in enumerate(unknowns)}
    basis: dict[int, dict[int, Fraction]] = {}
    for line in lines:
        row: dict[int, Fraction] = {}
        for key, sign in [(c, 1) for c in line.cells] + [(line.total, -1)]:
            if key in column:
                index = column[key]
                row[index] = row.get(index, Fraction(0)) + sign
        _insert(basis, {i: v for i, v in row.items() if v})
    return [
        unknowns[pivot] for pivot, row in sorted(basis.items()) if len(row) == 1 and pivot in row
    ]


def _insert(basis: dict[int, dict[int, Fraction]], row: dict[int, Fraction]) -> None:
    """Add `row` to a basis kept in reduced row echelon form (pivot column -> its row)."""
    for pivot in [p for p in row if p in basis]:
        factor = row.get(pivot)
        if factor:
            _subtract(row, basis[pivot], factor)
    if not row:
        return
    pivot = min(row)
    scale = row[pivot]
    row = {i: v / scale for i, v in row.items()}
    for other in basis.values():
        factor = other.get(pivot)
        if factor:
            _subtract(other, row, factor)
    basis[pivot] = row


def _subtract(target: dict[int, Fraction], row: Mapping[int, Fraction], factor: Fraction) -> None:
    for index, value in row.items():
        updated = target.get(index, Fraction(0)) - factor * value
        if updated:
            target[index] = updated
        else:
            target.pop(index, None)


def _unpinning(
    values: Mapping[Hashable, int],
    lines: Sequence[Line],
    hidden: set[Hashable],
    order: Mapping[Hashable, int],
    pinned: Hashable,
) -> Hashable | None:
    """The published nonzero figure whose withholding leaves `pinned` undetermined: the
    smallest one sharing a line with it, else the smallest of all; None when none does."""
    near = {key for line in lines if pinned in (*line.cells, line.total) for key in line.cells}
    near |= {line.total for line in lines if pinned in line.cells}
    candidates = sorted(
        (key for key, value in values.items() if value > 0 and key not in hidden),
        key=lambda key: (key not in near, values[key], order[key]),
    )
    for candidate in candidates:
        if pinned not in _pinned(lines, hidden | {candidate}, order):
            return candidate
    return None


# --- tables of counts with margins ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figure:
    """A published count, or a withheld one: `value` is None, so it cannot be shown by mistake."""

    value: int | None

    @property
    def suppressed(self) -> bool:
        return self.value is None


@dataclass(frozen=True, slots=True)
class CountTable:
    """Counts by row and column; a pair missing from `counts` counts zero."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    counts: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def count(self, row: str, column: str) -> int:
        return self.counts.get((row, column), 0)

    def row_total(self, row: str) -> int:
        return sum(self.count(row, column) for column in self.columns)


@dataclass(frozen=True, slots=True)
class DisclosedTable:
    """What may be published of a CountTable: every cell and margin, published or withheld."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: Mapping[tuple[str, str], Figure]
    row_totals: Mapping[str, Figure]
    column_totals: Mapping[str, Figure]
    total: Figure

    def cell(self, row: str, column: str) -> Figure:
        return self.cells[(row, column)]


def disclose_table(table: CountTable, k: int) -> DisclosedTable:
    return disclose_tables({"table": table}, k)["table"]


def disclose_tables(tables: Mapping[str, CountTable], k: int) -> dict[str, DisclosedTable]:
    """Tables of the same things cut by different columns (events by category, by status, by
    month, all with one row per community) share their row totals and grand total, so they are
    suppressed together: a row total withheld in one must not be published by another."""
    _check_linked(tables)
    values: dict[Hashable, int] = {}
    lines: list[Line] = []
    first = next(iter(tables.values()), None)
    rows = first.rows if first is not None else ()
    for name, table in tables.items():
        for row in table.rows:
            for column in table.columns:
                values[("cell", name, row, column)] = table.count(row, column)
    for name, table in tables.items():
        for column in table.columns:
            values[("column", name, column)] = sum(table.count(r, column) for r in rows)
    for row in rows:
        values[("row", row)] = first.row_total(row) if first is not None else 0
    values[("all",)] = sum(values[("row", row)] for row in rows)
    for name, table in tables.items():
        for row in rows:
            cells = tuple(("cell", name, row, column) for column in table.columns)
            lines.append(Line(cells, ("row", row)))
        for column in table.columns:
            cells = tuple(("cell", name, row, column) for row in rows)
            lines.append(Line(cells, ("column", name, column)))
        lines.append(Line(tuple(("column", name, c) for c in table.columns), ("all",)))
    lines.append(Line(tuple(("row", row) for row in rows), ("all",)))
    hidden = suppress(values, lines, k)

    def figure(key: Hashable) -> Figure:
        return Figure(None if key in hidden else values[key])

    return {
        name: DisclosedTable(
            rows=rows,
            columns=table.columns,
            cells={
                (row, column): figure(("cell", name, row, column))
                for row in rows
                for column in table.columns
            },
            row_totals={row: figure(("row", row)) for row in rows},
            column_totals={column: figure(("column", name, column)) for column in table.columns},
            total=figure(("all",)),
        )
        for name, table in tables.items()
    }


def _check_linked(tables: Mapping[str, CountTable]) -> None:
    tables_list = list(tables.values())
    for table in tables_list:
        if len(set(table.rows)) != len(table.rows) or len(set(table.columns)) != len(table.columns):
            raise ValueError("rows and columns must be unique")
        for (row, column), count in table.counts.items():
            if row not in table.rows or column not in table.columns:
                raise ValueError(f"count for ({row!r}, {column!r}) is outside the table")
            if count < 0:
                raise ValueError(f"count for ({row!r}, {column!r}) is negative")
    if tables_list:
        first = tables_list[0]
        for table in tables_list[1:]:
            if table.rows != first.rows:
                raise ValueError("linked tables must have the same rows")
            for row in first.rows:
                if table.row_total(row) != first.row_total(row):
                    raise ValueError(f"linked tables disagree on the total of row {row!r}")


# --- averages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mean:
    """A published average, a withheld one (`suppressed`), or none to give (no events)."""

    value: float | None
    suppressed: bool = False


@dataclass(frozen=True, slots=True)
class DisclosedMeans:
    means: Mapping[str, Mean]
    # The mean over every part, weighted by the counts.
    overall: Mean


def disclose_means(
    counts: Mapping[str, int], means: Mapping[str, float | None], k: int
) -> DisclosedMeans:
    """Means of parts (e.g. the average response time per community), each over `counts[part]`
    events. A mean is published only when its count would be: the count vector with its total
    is one line under the table rules, so a withheld mean always has a withheld partner, and
    the overall mean with the others cannot single it out."""
    values: dict[Hashable, int] = {("part", part): count for part, count in counts.items()}
    values[("all",)] = sum(counts.values())
    hidden = suppress(values, [Line(tuple(("part", p) for p in counts), ("all",))], k)
    published: dict[str, Mean] = {}
    for part, count in counts.items():
        mean = means.get(part)
        if ("part", part) in hidden:
            published[part] = Mean(None, suppressed=True)
        else:
            published[part] = Mean(mean if count > 0 else None)
    total = values[("all",)]
    if ("all",) in hidden:
        overall = Mean(None, suppressed=True)
    elif total == 0:
        overall = Mean(None)
    else:
        weighted = sum((means.get(p) or 0.0) * n for p, n in counts.items() if n > 0)
        overall = Mean(weighted / total)
    return DisclosedMeans(published, overall)
