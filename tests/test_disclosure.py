"""Cell suppression (hub.stats.disclosure): unit cases, and properties over random tables checked
by an attacker who searches for a second table agreeing with everything published."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.stats.disclosure import (
    CountTable,
    DisclosedTable,
    Line,
    _complete_lines,
    _pinned,
    disclose_means,
    disclose_table,
    disclose_tables,
    suppress,
)


def grid(rows: list[list[int]]) -> CountTable:
    names = tuple(f"r{i}" for i in range(len(rows)))
    columns = tuple(f"c{j}" for j in range(len(rows[0]) if rows else 0))
    counts = {(names[i], columns[j]): v for i, row in enumerate(rows) for j, v in enumerate(row)}
    return CountTable(names, columns, counts)


def shown(disclosed: DisclosedTable) -> list[list[int | None]]:
    """The table as published, with its margins: the last column and row are the totals."""
    body = [
        [disclosed.cell(r, c).value for c in disclosed.columns] + [disclosed.row_totals[r].value]
        for r in disclosed.rows
    ]
    margins = [disclosed.column_totals[c].value for c in disclosed.columns]
    return [*body, [*margins, disclosed.total.value]]


# --- unit cases --------------------------------------------------------------------------------


def test_a_small_count_takes_a_partner_in_its_row_and_column() -> None:
    table = grid([[3, 6, 7], [10, 12, 9], [8, 11, 20]])
    assert shown(disclose_table(table, 5)) == [
        # 3 is primary; 6 is the next smallest in its row, so 16 - 7 gives 9, not 3.
        [None, None, 7, 16],
        [10, 12, 9, 31],
        # Columns c0 and c1 each need a second withheld cell: 8 and then 11 close the cycle.
        [None, None, 20, 39],
        [21, 29, 36, 86],
    ]


def test_zero_is_published_and_never_withheld() -> None:
    table = grid([[0, 0, 9], [0, 12, 9]])
    assert shown(disclose_table(table, 5)) == [[0, 0, 9, 9], [0, 12, 9, 21], [0, 12, 18, 30]]
    assert shown(disclose_table(grid([[0, 0], [0, 0]]), 5)) == [[0, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_a_margin_below_k_withholds_its_whole_line() -> None:
    table = grid([[2, 1, 0], [10, 12, 9], [8, 11, 20]])
    disclosed = disclose_table(table, 5)
    assert disclosed.row_totals["r0"].suppressed
    assert [disclosed.cell("r0", c).value for c in table.columns] == [None, None, 0]
    # The row total is withheld, so the column of row totals needs a partner for it.
    assert sum(f.suppressed for f in disclosed.row_totals.values()) >= 2


def test_two_small_cells_whose_sum_is_below_k_take_a_third() -> None:
    # 1 + 2 = 3 < 5: knowing the two withheld cells add up to 3 says too much.
    disclosed = disclose_table(grid([[1, 2, 6, 30], [9, 9, 9, 30], [9, 9, 9, 30]]), 5)
    row = [disclosed.cell("r0", c) for c in ("c0", "c1", "c2", "c3")]
    assert [f.value for f in row] == [None, None, None, 30]


def test_a_lonely_withheld_cell_among_zeros_withholds_the_total() -> None:
    # Row r0 has one nonzero cell, forced out by its column; only zeros are left beside it.
    disclosed = disclose_table(grid([[7, 0], [3, 9], [9, 9]]), 5)
    assert disclosed.cell("r0", "c0").suppressed
    assert disclosed.row_totals["r0"].suppressed
    assert disclosed.cell("r0", "c1").value == 0


def test_k_of_one_withholds_nothing_and_k_below_one_is_refused() -> None:
    table = grid([[1, 2], [3, 0]])
    assert shown(disclose_table(table, 1)) == [[1, 2, 3], [3, 0, 3], [4, 2, 6]]
    with pytest.raises(ValueError):
        disclose_table(table, 0)


def test_the_exact_check_catches_what_the_line_rules_miss() -> None:
    """Two blocks of withheld cells, joined by one withheld cell: every line has two withheld
    cells adding up to k or more, yet the joining cell is the only unknown of the equation
    "block A's rows minus block A's columns", so the published figures pin it."""
    values: dict[Hashable, int] = {}
    lines: list[Line] = []
    table = [
        [2, 9, 30, 30, 30],
        [9, 2, 30, 30, 30],
        [30, 6, 2, 9, 30],
        [30, 30, 9, 2, 30],
        [30, 30, 30, 30, 30],
    ]
    disclosed = disclose_table(grid(table), 5)
    for i, row in enumerate(table):
        for j, v in enumerate(row):
            values[(i, j)] = v
        values[("row", i)] = sum(row)
        lines.append(Line(tuple((i, j) for j in range(len(row))), ("row", i)))
    for j in range(len(table[0])):
        values[("col", j)] = sum(row[j] for row in table)
        lines.append(Line(tuple((i, j) for i in range(len(table))), ("col", j)))
    values["all"] = sum(map(sum, table))
    lines.append(Line(tuple(("row", i) for i in range(len(table))), "all"))
    lines.append(Line(tuple(("col", j) for j in range(len(table[0]))), "all"))
    order = {key: n for n, key in enumerate(values)}
    hidden = {key for key, v in values.items() if 0 < v < 5}
    _complete_lines(values, lines, 5, hidden, order)
    assert (2, 1) in hidden
    assert _pinned(lines, hidden, order) == [(2, 1)]
    # The full algorithm does not stop there.
    final = suppress(values, lines, 5)
    assert _pinned(lines, set(final), order) == []
    assert disclosed.cell("r2", "c1").suppressed
    assert_nobody_is_pinned({"table": grid(table)}, {"table": disclosed})


def test_linked_tables_withhold_a_shared_row_total_in_both() -> None:
    by_category = CountTable(("C1", "C2"), ("a", "b"), {("C1", "a"): 2, ("C2", "a"): 9})
    by_status = CountTable(("C1", "C2"), ("x", "y"), {("C1", "x"): 1, ("C1", "y"): 1})
    with pytest.raises(ValueError, match="disagree"):
        disclose_tables({"category": by_category, "status": by_status}, 5)
    by_status = CountTable(
        ("C1", "C2"), ("x", "y"), {("C1", "x"): 1, ("C1", "y"): 1, ("C2", "y"): 9}
    )
    linked = disclose_tables({"category": by_category, "status": by_status}, 5)
    for disclosed in linked.values():
        assert disclosed.row_totals["C1"].suppressed
        assert disclosed.row_totals["C2"].suppressed  # its partner in the column of totals


def test_unknown_rows_and_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        disclose_table(CountTable(("a",), ("x",), {("b", "x"): 1}), 5)
    with pytest.raises(ValueError):
        disclose_table(CountTable(("a",), ("x",), {("a", "x"): -1}), 5)


def test_a_mean_follows_its_count_and_takes_a_partner() -> None:
    counts = {"C1": 3, "C2": 20, "C3": 30, "C4": 0}
    means = {"C1": 100.0, "C2": 200.0, "C3": 400.0, "C4": None}
    disclosed = disclose_means(counts, means, 5)
    assert disclosed.means["C1"].suppressed and disclosed.means["C1"].value is None
    # Without a partner, the overall mean and C3's would give C1's away.
    assert disclosed.means["C2"].suppressed and disclosed.means["C2"].value is None
    assert disclosed.means["C3"].value == 400.0
    assert disclosed.means["C4"].value is None and not disclosed.means["C4"].suppressed
    assert disclosed.overall.value == pytest.approx((300 + 4000 + 12000) / 53)


def test_means_over_too_few_events_are_all_withheld() -> None:
    disclosed = disclose_means({"C1": 2, "C2": 1}, {"C1": 5.0, "C2": 7.0}, 5)
    assert disclosed.overall.suppressed
    assert all(mean.suppressed for mean in disclosed.means.values())


# --- the attacker ------------------------------------------------------------------------------

Entry = tuple[Any, ...]


def published(tables: Mapping[str, CountTable], disclosed: Mapping[str, DisclosedTable]) -> dict:
    """Everything a reader sees, keyed by entry."""
    seen: dict[Entry, int | None] = {}
    for name, d in disclosed.items():
        for (row, column), figure in d.cells.items():
            seen[("cell", name, row, column)] = figure.value
        for column, figure in d.column_totals.items():
            seen[("column", name, column)] = figure.value
        for row, figure in d.row_totals.items():
            seen[("row", row)] = figure.value
        seen[("all",)] = d.total.value
    return seen


def entries_of(tables: Mapping[str, CountTable]) -> dict[Entry, int]:
    """Every figure of linked tables (cells, shared row totals, column totals, grand total)."""
    found: dict[Entry, int] = {}
    first = next(iter(tables.values()))
    for name, table in tables.items():
        for row in table.rows:
            for column in table.columns:
                found[("cell", name, row, column)] = table.count(row, column)
        for column in table.columns:
            found[("column", name, column)] = sum(table.count(r, column) for r in table.rows)
    for row in first.rows:
        found[("row", row)] = first.row_total(row)
    found[("all",)] = sum(first.row_total(r) for r in first.rows)
    return found


def another_table(
    tables: Mapping[str, CountTable], seen: Mapping[Entry, int | None], target: Entry
) -> dict[Entry, int] | None:
    """A search over changes of -1, 0 or +1 to each withheld cell for non-negative tables that
    agree with every published figure and differ in `target`; None when there are none."""
    first = next(iter(tables.values()))
    rows = first.rows
    names = list(tables)
    free = [
        (name, row, column)
        for row in rows
        for name in names
        for column in tables[name].columns
        if seen[("cell", name, row, column)] is None
    ]
    original = entries_of(tables)
    deltas: dict[tuple[str, str, str], int] = {}
    # How many free cells of each column are still to be decided, for pruning.
    remaining = {
        (name, column): sum(1 for n, _, c in free if (n, c) == (name, column))
        for name in names
        for column in tables[name].columns
    }
    column_sum = dict.fromkeys(remaining, 0)

    def row_delta(name: str, row: str) -> int:
        return sum(deltas.get((name, row, c), 0) for c in tables[name].columns)

    def row_fits(row: str) -> bool:
        changes = {row_delta(name, row) for name in names}
        if len(changes) != 1:
            return False  # the row total is shared: every table must move it alike
        change = changes.pop()
        if seen[("row", row)] is not None and change != 0:
            return False
        return original[("row", row)] + change >= 0

    def done() -> dict[Entry, int] | None:
        changed = dict(original)
        for (name, row, column), d in deltas.items():
            changed[("cell", name, row, column)] += d
        for row in rows:
            changed[("row", row)] += row_delta(names[0], row)
        for name, column in column_sum:
            changed[("column", name, column)] += column_sum[(name, column)]
        changed[("all",)] += sum(row_delta(names[0], row) for row in rows)
        agrees = all(v is None or changed[key] == v for key, v in seen.items())
        if agrees and min(changed.values()) >= 0 and changed[target] != original[target]:
            return changed
        return None

    def search(index: int) -> dict[Entry, int] | None:
        if index == len(free):
            return done()
        name, row, column = free[index]
        choices = (1, -1) if target == ("cell", name, row, column) else (0, 1, -1)
        remaining[(name, column)] -= 1
        try:
            for d in choices:
                if original[("cell", name, row, column)] + d < 0:
                    continue
                deltas[(name, row, column)] = d
                column_sum[(name, column)] += d
                ok = True
                published_column = seen[("column", name, column)] is not None
                if published_column and abs(column_sum[(name, column)]) > remaining[(name, column)]:
                    ok = False
                last_of_row = index + 1 == len(free) or free[index + 1][1] != row
                if ok and last_of_row and not row_fits(row):
                    ok = False
                if ok:
                    found = search(index + 1)
                    if found is not None:
                        return found
                column_sum[(name, column)] -= d
                del deltas[(name, row, column)]
            return None
        finally:
            remaining[(name, column)] += 1

    return search(0)


def assert_nobody_is_pinned(
    tables: Mapping[str, CountTable], disclosed: Mapping[str, DisclosedTable]
) -> None:
    seen = published(tables, disclosed)
    for target, value in seen.items():
        if value is not None:
            continue
        other = another_table(tables, seen, target)
        assert other is not None, f"{target} is pinned by the published figures"
        # The witness really is a table a reader could not tell apart from the true one.
        assert all(v is None or other[key] == v for key, v in seen.items())
        assert other[target] != entries_of(tables)[target]


# --- properties ------------------------------------------------------------------------------

COUNT = st.one_of(st.just(0), st.integers(1, 4), st.integers(5, 25))
K = st.integers(2, 7)


@st.composite
def tables(draw: st.DrawFn, max_rows: int = 5, max_columns: int = 5) -> CountTable:
    n_rows = draw(st.integers(1, max_rows))
    n_columns = draw(st.integers(1, max_columns))
    return grid([[draw(COUNT) for _ in range(n_columns)] for _ in range(n_rows)])


@st.composite
def linked_tables(draw: st.DrawFn) -> dict[str, CountTable]:
    """Two or three tables of the same rows, their row totals split differently."""
    first = draw(tables(max_rows=4, max_columns=3))
    found = {"t0": first}
    for n in range(1, draw(st.integers(2, 3))):
        n_columns = draw(st.integers(1, 3))
        columns = tuple(f"d{j}" for j in range(n_columns))
        counts: dict[tuple[str, str], int] = {}
        for row in first.rows:
            left = first.row_total(row)
            for column in columns[:-1]:
                part = draw(st.integers(0, left))
                counts[(row, column)] = part
                left -= part
            counts[(row, columns[-1])] = left
        found[f"t{n}"] = CountTable(first.rows, columns, counts)
    return found


def lines_of(disclosed: DisclosedTable) -> list[tuple[list[int | None], int | None]]:
    """Each line as published (cells, total): rows, columns, then the two margins."""
    found = []
    for row in disclosed.rows:
        cells = [disclosed.cell(row, c) for c in disclosed.columns]
        found.append(([f.value for f in cells], disclosed.row_totals[row].value))
    for column in disclosed.columns:
        cells = [disclosed.cell(r, column) for r in disclosed.rows]
        found.append(([f.value for f in cells], disclosed.column_totals[column].value))
    found.append(([disclosed.row_totals[r].value for r in disclosed.rows], disclosed.total.value))
    found.append(
        ([disclosed.column_totals[c].value for c in disclosed.columns], disclosed.total.value)
    )
    return found


def true_lines(table: CountTable) -> list[tuple[list[int], int]]:
    found = [([table.count(r, c) for c in table.columns], table.row_total(r)) for r in table.rows]
    for column in table.columns:
        cells = [table.count(r, column) for r in table.rows]
        found.append((cells, sum(cells)))
    totals = [table.row_total(r) for r in table.rows]
    found.append((totals, sum(totals)))
    column_totals = [sum(table.count(r, c) for r in table.rows) for c in table.columns]
    found.append((column_totals, sum(column_totals)))
    return found


def check_rules(table: CountTable, disclosed: DisclosedTable, k: int) -> None:
    # (a) nothing published below k but zero.
    everything = [
        *disclosed.cells.values(),
        *disclosed.row_totals.values(),
        *disclosed.column_totals.values(),
        disclosed.total,
    ]
    assert all(f.value is None or f.value == 0 or f.value >= k for f in everything)
    # Published figures are the true ones.
    for (row, column), figure in disclosed.cells.items():
        assert figure.value in (None, table.count(row, column))
    # (b) every line that withholds anything hides it behind a withheld total, or behind at
    # least two withheld cells adding up to k or more.
    for (shown_cells, shown_total), (cells, total) in zip(
        lines_of(disclosed), true_lines(table), strict=True
    ):
        hidden = [true for seen, true in zip(shown_cells, cells, strict=True) if seen is None]
        if shown_total is None:
            assert total == 0 or hidden, "a withheld total with every cell published"
        elif hidden:
            assert len(hidden) >= 2 and sum(hidden) >= k
        # Zero is always published.
        assert all(seen == 0 for seen, true in zip(shown_cells, cells, strict=True) if true == 0)


@settings(max_examples=600, deadline=None)
@given(table=tables(), k=K)
def test_random_tables_publish_nothing_small_or_derivable(table: CountTable, k: int) -> None:
    disclosed = disclose_table(table, k)
    check_rules(table, disclosed, k)
    # (c) the attacker finds, for each withheld figure, a second table that fits.
    assert_nobody_is_pinned({"table": table}, {"table": disclosed})
    # (d) deterministic, whatever order the counts were given in.
    again = CountTable(table.rows, table.columns, dict(reversed(list(table.counts.items()))))
    assert disclose_table(again, k) == disclosed


@settings(max_examples=300, deadline=None)
@given(linked=linked_tables(), k=K)
def test_linked_tables_publish_nothing_derivable(linked: dict[str, CountTable], k: int) -> None:
    disclosed = disclose_tables(linked, k)
    for name, table in linked.items():
        check_rules(table, disclosed[name], k)
        # A shared row total is published everywhere or nowhere.
        for row in table.rows:
            assert disclosed[name].row_totals[row] == disclosed["t0"].row_totals[row]
    assert_nobody_is_pinned(linked, disclosed)
    assert disclose_tables(linked, k) == disclosed


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(COUNT, min_size=1, max_size=6), k=K)
def test_a_withheld_mean_cannot_be_worked_out(counts: list[int], k: int) -> None:
    parts = {f"p{i}": n for i, n in enumerate(counts)}
    means = {p: float(10 * i + 1) if n else None for i, (p, n) in enumerate(parts.items())}
    disclosed = disclose_means(parts, means, k)
    hidden = [parts[p] for p, mean in disclosed.means.items() if mean.suppressed]
    for part, mean in disclosed.means.items():
        if mean.value is not None:
            assert parts[part] >= k
    if not disclosed.overall.suppressed and hidden:
        # The overall mean is published: the withheld ones hide in a group of at least two
        # parts with k events or more between them.
        assert len(hidden) >= 2 and sum(hidden) >= k
    if disclosed.overall.suppressed:
        assert sum(counts) < k or hidden
