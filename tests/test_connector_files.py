"""The file kind: real CSV and XLSX files on disk, in the encodings departments actually send."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from hub.connectors.files import (
    FileSource,
    check_options,
    fingerprint,
    open_source,
    write_csv,
    write_xlsx,
)
from hub.connectors.records import Malformed, Page, Record, SourceContext, SourceError

HEADER = "姓名,身份证号,住址"
ROWS = [
    "张伟,110101199003070011,东城区一号",
    "欧阳娜娜,110101198512120022,西城区二号",
]


def source(path: Path, page_size: int = 500, **options: Any) -> FileSource:
    return open_source(
        SourceContext(connector="huji", options={"path": str(path), **options}, page_size=page_size)
    )


async def read(src: FileSource, cursor: dict[str, Any] | None = None) -> list[Page]:
    return [page async for page in src.pages(cursor)]


def records(pages: list[Page]) -> list[Record]:
    return [record for page in pages for record in page.records]


def malformed(pages: list[Page]) -> list[Malformed]:
    return [item for page in pages for item in page.malformed]


def write_text(path: Path, lines: list[str], encoding: str) -> Path:
    path.write_bytes("\r\n".join(lines).encode(encoding) + b"\r\n")
    return path


class TestEncodings:
    @pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
    @pytest.mark.parametrize("named", [False, True])
    async def test_chinese_headers_and_names(
        self, tmp_path: Path, encoding: str, named: bool
    ) -> None:
        path = write_text(tmp_path / "huji.csv", [HEADER, *ROWS], encoding)
        options = {"encoding": encoding} if named else {}
        pages = await read(source(path, **options))
        assert [(r.payload, r.position) for r in records(pages)] == [
            ({"姓名": "张伟", "身份证号": "110101199003070011", "住址": "东城区一号"}, "line 2"),
            (
                {"姓名": "欧阳娜娜", "身份证号": "110101198512120022", "住址": "西城区二号"},
                "line 3",
            ),
        ]
        assert malformed(pages) == []

    async def test_gb18030_only_characters(self, tmp_path: Path) -> None:
        # 𠀀 and 㐀 are not in GBK: GB18030 encodes them, GBK cannot.
        lines = [HEADER, "𠀀㐀,110101199003070011,东城区"]
        with pytest.raises(UnicodeEncodeError):
            "\n".join(lines).encode("gbk")
        path = write_text(tmp_path / "huji.csv", lines, "gb18030")
        (record,) = records(await read(source(path)))
        assert record.payload["姓名"] == "𠀀㐀"

    async def test_gb18030_text_named_as_gbk_is_malformed_not_a_crash(self, tmp_path: Path) -> None:
        path = write_text(tmp_path / "huji.csv", [HEADER, "𠀀,1,a", *ROWS], "gb18030")
        pages = await read(source(path, encoding="gbk"))
        (bad,) = malformed(pages)
        assert bad.position == "line 2"
        assert "not valid gbk text" in bad.reason
        assert [r.position for r in records(pages)] == ["line 3", "line 4"]

    async def test_bad_bytes_after_the_detected_head_are_one_malformed_line(
        self, tmp_path: Path
    ) -> None:
        # More than the detector's first chunk of good UTF-8, then a line of GBK bytes.
        filler = [f"张伟{i},{i:018d},东城区" for i in range(3000)]
        body = ("\n".join([HEADER, *filler]) + "\n").encode()
        assert len(body) > 64 * 1024
        bad = "欧阳娜娜,1,西城区".encode("gbk")
        path = tmp_path / "huji.csv"
        path.write_bytes(body + bad + b"\n" + "李四,2,朝阳区\n".encode())

        pages = await read(source(path))
        (item,) = malformed(pages)
        assert item.position == f"line {len(filler) + 2}"
        assert "not valid utf-8 text" in item.reason
        assert "\\x" in item.raw  # the bytes are shown, not lost
        last = records(pages)[-1]
        assert (last.payload["姓名"], last.position) == ("李四", f"line {len(filler) + 3}")
        assert len(records(pages)) == len(filler) + 1

    async def test_bom_is_not_part_of_the_first_header(self, tmp_path: Path) -> None:
        path = write_text(tmp_path / "huji.csv", [HEADER, *ROWS], "utf-8-sig")
        (first, _) = records(await read(source(path, encoding="utf-8")))
        assert list(first.payload) == ["姓名", "身份证号", "住址"]


class TestRows:
    async def test_malformed_rows_are_reported_and_the_run_continues(self, tmp_path: Path) -> None:
        lines = [
            HEADER,
            "张伟,1,东城区,多余",  # too many cells
            '"欧阳"娜娜,2,西城区',  # a stray quote: not CSV
            "李四,3",  # too few: a record without 住址
            "",
            ",,",  # blank rows are skipped
            '王五,4,"朝阳区',  # a quoted cell over two lines
            '二号"',
            "赵六,5,海淀区,,",  # empty trailing cells are padding, not extra data
        ]
        pages = await read(source(write_text(tmp_path / "huji.csv", lines, "utf-8")))
        assert [(m.position, m.raw) for m in malformed(pages)] == [
            ("line 2", ["张伟", "1", "东城区", "多余"]),
            ("line 3", '"欧阳"娜娜,2,西城区'),
        ]
        assert "4 cells, but the header has 3" in malformed(pages)[0].reason
        assert [(r.position, r.payload) for r in records(pages)] == [
            ("line 4", {"姓名": "李四", "身份证号": "3"}),
            ("line 7", {"姓名": "王五", "身份证号": "4", "住址": "朝阳区\r\n二号"}),
            ("line 9", {"姓名": "赵六", "身份证号": "5", "住址": "海淀区"}),
        ]

    async def test_header_row_below_a_title(self, tmp_path: Path) -> None:
        lines = ["东城区户籍登记表", "姓名;身份证号", "张伟;1"]
        path = write_text(tmp_path / "huji.txt", lines, "gbk")
        (record,) = records(await read(source(path, header_row=2, delimiter=";")))
        assert (record.payload, record.position) == ({"姓名": "张伟", "身份证号": "1"}, "line 3")

    @pytest.mark.parametrize(
        ("header", "message"),
        [("姓名,身份证号, 姓名 ", "'姓名' appears more than once"), ("姓名,,住址", "cell 2")],
    )
    async def test_a_bad_header_fails_at_open(
        self, tmp_path: Path, header: str, message: str
    ) -> None:
        path = write_text(tmp_path / "huji.csv", [header, "张伟,1,2"], "utf-8")
        with pytest.raises(SourceError, match=message) as raised:
            await read(source(path))
        assert raised.value.code == "BAD_HEADER"

    async def test_a_missing_file_is_a_source_error(self, tmp_path: Path) -> None:
        with pytest.raises(SourceError, match="no such file"):
            await read(source(tmp_path / "absent.csv"))


class TestCursor:
    def lines(self, count: int) -> list[str]:
        return [HEADER, *(f"张伟{i},{i},东城区" for i in range(count))]

    async def test_pages_carry_the_line_consumed_and_the_last_is_done(self, tmp_path: Path) -> None:
        path = write_text(tmp_path / "huji.csv", [*self.lines(5), "", ""], "utf-8")
        pages = await read(source(path, page_size=2))
        fp = fingerprint(path)
        assert [len(p.records) for p in pages] == [2, 2, 1]
        assert [p.cursor for p in pages] == [
            {"fingerprint": fp, "line": 3},
            {"fingerprint": fp, "line": 5},
            {"fingerprint": fp, "line": 8, "done": True},  # the trailing blanks too
        ]

    async def test_resume_skips_exactly_the_consumed_lines(self, tmp_path: Path) -> None:
        lines = [
            HEADER,
            "张伟,1,东城区",
            '欧阳娜娜,2,"西城区',
            '二号"',
            "李四,3,朝阳区",
            "王五,4,海淀区",
        ]
        path = write_text(tmp_path / "huji.csv", lines, "gb18030")
        whole = records(await read(source(path)))
        first = await read(source(path, page_size=2))
        assert first[0].cursor is not None and first[0].cursor["line"] == 4
        rest = await read(source(path, page_size=2), first[0].cursor)
        assert records(first[:1]) + records(rest) == whole
        assert [r.position for r in records(rest)] == ["line 5", "line 6"]

    async def test_a_done_cursor_yields_nothing(self, tmp_path: Path) -> None:
        path = write_text(tmp_path / "huji.csv", self.lines(3), "utf-8")
        pages = await read(source(path))
        assert pages[-1].cursor is not None and pages[-1].cursor["done"] is True
        assert await read(source(path), pages[-1].cursor) == []

    async def test_a_changed_file_starts_again(self, tmp_path: Path) -> None:
        path = write_text(tmp_path / "huji.csv", self.lines(3), "utf-8")
        cursor = (await read(source(path)))[-1].cursor
        write_text(path, self.lines(4), "utf-8")
        again = records(await read(source(path), cursor))
        assert [r.position for r in again] == ["line 2", "line 3", "line 4", "line 5"]

    async def test_an_empty_file_gives_one_done_page(self, tmp_path: Path) -> None:
        path = write_text(tmp_path / "huji.csv", [HEADER], "utf-8")
        (page,) = await read(source(path))
        assert page.records == [] and page.cursor is not None and page.cursor["done"] is True


class TestXlsx:
    async def test_cells_from_excel_become_text(self, tmp_path: Path) -> None:
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.append(["姓名", "出生日期", "人口数", "面积", "备注"])
        sheet.append(["张伟", date(1990, 3, 7), 3, 12.5, None])
        sheet.append([None, None, None, None, None])
        sheet.append(["欧阳娜娜", datetime(1985, 12, 12), 4.0, 80, "=1+1"])
        book.create_sheet("other")
        path = tmp_path / "huji.xlsx"
        book.save(path)

        pages = await read(source(path))
        assert [(r.payload, r.position) for r in records(pages)] == [
            (
                {
                    "姓名": "张伟",
                    "出生日期": "1990-03-07",
                    "人口数": "3",
                    "面积": "12.5",
                    "备注": "",
                },
                "line 2",
            ),
            (
                {
                    "姓名": "欧阳娜娜",
                    "出生日期": "1985-12-12",
                    "人口数": "4",
                    "面积": "80",
                    # A formula gives its cached result; openpyxl saved none.
                    "备注": "",
                },
                "line 4",
            ),
        ]

    async def test_named_sheet_extra_cells_and_resume(self, tmp_path: Path) -> None:
        path = tmp_path / "huji.xlsx"
        rows = [["张伟", "1"], ["欧阳娜娜", "2", "多余"], ["李四", "3"], ["王五", "4"]]
        write_xlsx(path, ["姓名", "身份证号"], rows, sheet="户籍")
        pages = await read(source(path, page_size=2, sheet="户籍"))
        assert [(m.position, m.raw) for m in malformed(pages)] == [
            ("line 3", ["欧阳娜娜", "2", "多余"])
        ]
        assert pages[0].cursor is not None and pages[0].cursor["line"] == 3
        rest = records(await read(source(path, page_size=2, sheet=1), pages[0].cursor))
        assert [r.payload["姓名"] for r in rest] == ["李四", "王五"]

    async def test_not_a_workbook(self, tmp_path: Path) -> None:
        path = write_text(tmp_path / "huji.xlsx", [HEADER], "utf-8")
        with pytest.raises(SourceError, match="not a readable XLSX workbook"):
            await read(source(path))


EXPORT_HEADER = ["姓名", "身份证号", "出生日期", "备注"]
EXPORT_ROWS = [
    ["张伟", "110101199003070011", date(1990, 3, 7), None],
    ["𠀀㐀", "0011", date(2001, 1, 2), "=HYPERLINK(1)"],
    ["欧阳娜娜", "110101198512120022", None, "第一行\n第二行, 带逗号"],
]
EXPORTED = [
    {"姓名": "张伟", "身份证号": "110101199003070011", "出生日期": "1990-03-07", "备注": ""},
    {"姓名": "𠀀㐀", "身份证号": "0011", "出生日期": "2001-01-02", "备注": "=HYPERLINK(1)"},
    {
        "姓名": "欧阳娜娜",
        "身份证号": "110101198512120022",
        "出生日期": "",
        "备注": "第一行\n第二行, 带逗号",
    },
]


class TestExport:
    @pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030"])
    async def test_csv_round_trip(self, tmp_path: Path, encoding: str) -> None:
        path = tmp_path / "out.csv"
        assert write_csv(path, EXPORT_HEADER, iter(EXPORT_ROWS), encoding=encoding) == 3
        assert path.read_bytes().startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
        got = records(await read(source(path)))
        assert [r.payload for r in got] == EXPORTED
        assert os.listdir(tmp_path) == ["out.csv"]

    async def test_xlsx_round_trip(self, tmp_path: Path) -> None:
        path = tmp_path / "out.xlsx"
        assert write_xlsx(path, EXPORT_HEADER, iter(EXPORT_ROWS)) == 3
        got = records(await read(source(path, sheet="residents")))
        assert [r.payload for r in got] == EXPORTED
        # Text, not a formula: Excel must not evaluate what a resident typed.
        book = openpyxl.load_workbook(path)
        assert book["residents"]["D3"].data_type == "s"
        assert os.listdir(tmp_path) == ["out.xlsx"]

    def test_a_failed_export_leaves_the_old_file(self, tmp_path: Path) -> None:
        path = tmp_path / "out.csv"
        write_csv(path, ["姓名"], [["张伟"]])
        before = path.read_bytes()

        def rows() -> Any:
            yield ["欧阳娜娜"]
            raise RuntimeError("database went away")

        with pytest.raises(RuntimeError):
            write_csv(path, ["姓名"], rows())
        with pytest.raises(RuntimeError):
            write_xlsx(tmp_path / "out.xlsx", ["姓名"], rows())
        assert path.read_bytes() == before
        assert os.listdir(tmp_path) == ["out.csv"]

    def test_gbk_is_refused_for_export(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="encoding"):
            write_csv(tmp_path / "out.csv", ["姓名"], [], encoding="gbk")


class TestOptions:
    def test_a_usable_table(self) -> None:
        assert check_options({"path": "dumps/huji.csv"}) == []
        assert (
            check_options(
                {
                    "path": "dumps/huji.dat",
                    "format": "csv",
                    "encoding": "GB18030",
                    "delimiter": "\t",
                    "header_row": 2,
                }
            )
            == []
        )
        assert check_options({"path": "huji.xlsx", "sheet": "户籍"}) == []

    def test_every_problem_is_named(self) -> None:
        problems = check_options(
            {
                "format": "json",
                "encoding": "big5",
                "delimiter": ",,",
                "sheet": 0,
                "header_row": True,
                "encodng": "gbk",
            }
        )
        assert sorted(key for key, _ in problems) == [
            "delimiter",
            "encoding",
            "encodng",
            "format",
            "header_row",
            "path",
            "sheet",
        ]

    def test_format_from_an_unknown_extension(self) -> None:
        assert [key for key, _ in check_options({"path": "huji.dat"})] == ["format"]

    def test_open_refuses_bad_options(self) -> None:
        with pytest.raises(SourceError, match="encoding") as raised:
            open_source(SourceContext(connector="huji", options={"path": "a.csv", "encoding": "x"}))
        assert raised.value.code == "BAD_OPTIONS"


_READ_ALL = """
import asyncio, resource, sys
from pathlib import Path
from hub.connectors.files import open_source
from hub.connectors.records import SourceContext

async def main(path):
    seen, last = 0, "-"
    if path:
        source = open_source(SourceContext(connector="big", options={"path": path}, page_size=1000))
        async for page in source.pages(None):
            assert not page.malformed
            seen += len(page.records)
            last = page.records[-1].position if page.records else last
    print(seen, last.replace(" ", "_"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else ""))
"""


def _read_in_child(*args: str) -> tuple[int, str, int]:
    # A child process of its own: its peak RSS is the reader's, whatever the test process holds.
    out = subprocess.run(
        [sys.executable, "-c", _READ_ALL, *args], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), out[1].replace("_", " "), int(out[2]) * 1024


@pytest.mark.slow
def test_a_million_rows_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    count = 1_000_000
    with path.open("w", encoding="gb18030", newline="") as out:
        out.write("姓名,身份证号,住址,电话,户号\r\n")
        for i in range(count):
            out.write(
                f"欧阳娜娜{i},11010119900307{i:06d},东城区某街道{i}号院,1380000{i:06d},H{i:08d}\r\n"
            )
    size = path.stat().st_size
    assert size > 80_000_000  # ~84 MB: far more than the memory allowed below

    _, _, baseline = _read_in_child()  # the same imports, reading nothing
    seen, last, peak = _read_in_child(str(path))
    assert seen == count
    assert last == f"line {count + 1}"
    # Reading the whole file costs a bounded amount over the interpreter's own footprint.
    assert peak - baseline < 40 * 1024 * 1024, (peak, baseline, size)
