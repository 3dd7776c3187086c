"""The `file` kind: household-registry dumps (户籍 data) as CSV or XLSX, read and written streaming.

Departments hand over their registers as files: CSV from an old system (often GBK), XLSX saved
from Excel. A dump may hold millions of rows, so nothing here reads a whole file into memory:
CSV goes through the csv module one physical line at a time, XLSX through openpyxl's read-only
parser. Reading runs one page per `asyncio.to_thread` call, so a large file never blocks the
event loop for longer than a page takes.

Source options (keys of the definition's [source] table):

| option | default | meaning |
|---|---|---|
| `path` | (required) | the CSV or XLSX file (relative: from the working directory) |
| `format` | `"auto"` | `"csv"`, `"xlsx"`, or `"auto"`: by extension (.csv .txt .tsv, .xlsx .xlsm) |
| `encoding` | `"auto"` | CSV: `"auto"`, `"utf-8"`, `"utf-8-sig"`, `"gbk"`, `"gb18030"` |
| `delimiter` | `","` | CSV: one character, e.g. `"\\t"` or `";"` |
| `sheet` | first sheet | XLSX: the sheet's name, or its 1-based number |
| `header_row` | 1 | 1-based line (CSV) or row (XLSX) of the column names; lines above it skipped |

Encoding "auto": a UTF-8 BOM means UTF-8; otherwise the first chunks (up to 1 MiB, stopping at
the first non-ASCII text) are tried as strict UTF-8, and GB18030 (a superset of GBK) is used if
they fail. A UTF-8 BOM is dropped whichever UTF-8 encoding is named.

Records: the payload maps each header cell's text (stripped) to the row's cell as a string
(empty cell: ""); the position is "line N", N the 1-based physical line (row) where the record
starts, counting the header. A CSV row with fewer cells than the header leaves the missing keys
out (the mapping reports missing fields); in XLSX a cell not stored is an empty cell. Fully blank
rows are skipped; empty cells after the last header column are ignored (Excel pads rows to the
sheet's width). These become `Malformed` and the run goes on: a row with a non-empty cell beyond
the header (raw: the cells), a line that does not decode in the file's encoding or is longer
than 1 MiB, and a row csv cannot parse, e.g. a stray quote (raw: the row's text, undecodable
bytes shown as `\\xNN`). A page holds at most `page_size` items, records and malformed together.

Cursor: {"fingerprint": "<size>-<mtime_ns>-<sha256 of the first 64 KiB>", "line": <last line
consumed>}, plus "done": true on the last page. The same file and a done cursor: nothing to read;
the same file and not done: resume after `line`; a different file: start again from the top.

XLSX values: integral numbers without ".0", dates as "YYYY-MM-DD" (date-times with a time of day
as ISO "YYYY-MM-DDTHH:MM:SS"), booleans as TRUE/FALSE, empty as "". An 18-digit ID number saved
by Excel as a number has already lost its last digits; only a text cell keeps it.

Export: `write_csv` and `write_xlsx` stream rows into a temporary file beside the target and
rename it into place, so a reader never sees half a file. Every value is written as text.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any, Protocol, cast

from hub.connectors.records import Malformed, Page, Record, SourceContext, SourceError

FORMATS = ("auto", "csv", "xlsx")
ENCODINGS = ("auto", "utf-8", "utf-8-sig", "gbk", "gb18030")
WRITE_ENCODINGS = ("utf-8-sig", "utf-8", "gb18030")  # GBK cannot encode every name: not offered
OPTIONS = ("path", "format", "encoding", "delimiter", "sheet", "header_row")
_EXTENSIONS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx"}

FINGERPRINT_BYTES = 64 * 1024
DETECT_CHUNK = 64 * 1024
DETECT_LIMIT = 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024
_BOM = codecs.BOM_UTF8

Item = Record | Malformed


# --- options -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileOptions:
    path: Path
    format: str  # "csv" | "xlsx", resolved from "auto"
    encoding: str
    delimiter: str
    sheet: str | int | None
    header_row: int

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> FileOptions:
        """The options of a [source] table that `check_options` accepted."""
        path = Path(options["path"])
        chosen = str(options.get("format", "auto")).lower()
        return cls(
            path=path,
            format=_EXTENSIONS[path.suffix.lower()] if chosen == "auto" else chosen,
            encoding=str(options.get("encoding", "auto")).lower(),
            delimiter=options.get("delimiter", ","),
            sheet=options.get("sheet"),
            header_row=options.get("header_row", 1),
        )


def check_options(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(option, problem) for every unusable option of a file [source] table; empty if usable."""
    problems = [(key, f"unknown option (known: {', '.join(OPTIONS)})") for key in options]
    problems = [p for p in problems if p[0] not in OPTIONS]
    path = options.get("path")
    fmt = options.get("format", "auto")
    if not isinstance(path, str) or not path.strip():
        problems.append(("path", "must be the file's path (a non-empty string)"))
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        problems.append(("format", f"must be one of {', '.join(FORMATS)}"))
    elif (
        fmt.lower() == "auto"
        and isinstance(path, str)
        and path.strip()
        and Path(path).suffix.lower() not in _EXTENSIONS
    ):
        known = ", ".join(_EXTENSIONS)
        problems.append(("format", f"cannot tell from the extension (know {known}): set it"))
    encoding = options.get("encoding", "auto")
    if not isinstance(encoding, str) or encoding.lower() not in ENCODINGS:
        problems.append(("encoding", f"must be one of {', '.join(ENCODINGS)}"))
    delimiter = options.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        problems.append(("delimiter", "must be one character (not a quote or a line break)"))
    sheet = options.get("sheet")
    if sheet is not None and not _usable_sheet(sheet):
        problems.append(("sheet", "must be a sheet name or a 1-based sheet number"))
    header_row = options.get("header_row", 1)
    if isinstance(header_row, bool) or not isinstance(header_row, int) or header_row < 1:
        problems.append(("header_row", "must be a whole number from 1"))
    return problems


def _usable_sheet(sheet: Any) -> bool:
    if isinstance(sheet, str):
        return bool(sheet.strip())
    return isinstance(sheet, int) and not isinstance(sheet, bool) and sheet >= 1


def open_source(ctx: SourceContext) -> FileSource:
    problems = check_options(ctx.options)
    if problems:
        detail = "; ".join(f"{key}: {problem}" for key, problem in problems)
        raise SourceError(f"[source] {detail}", code="BAD_OPTIONS")
    return FileSource(FileOptions.from_options(ctx.options), page_size=ctx.page_size)


# --- the source --------------------------------------------------------------------------------


def fingerprint(path: Path) -> str:
    """Size, mtime and a hash of the head: cheap, and changes when a new dump replaces the file."""
    with path.open("rb") as stream:
        stat = os.fstat(stream.fileno())
        head = hashlib.sha256(stream.read(FINGERPRINT_BYTES)).hexdigest()
    return f"{stat.st_size}-{stat.st_mtime_ns}-{head}"


class _Rows(Protocol):
    """A file's rows after the header: (last line the row used, the item); blank rows left out."""

    path: Path
    header: list[str]

    @property
    def lines_read(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[int, Item]]: ...

    def close(self) -> None: ...


class FileSource:
    def __init__(self, options: FileOptions, *, page_size: int) -> None:
        self.options = options
        self.page_size = page_size

    async def pages(self, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        reader = await asyncio.to_thread(self._open, cursor)
        if reader is None:
            return
        try:
            while True:
                page = await asyncio.to_thread(reader.next_page, self.page_size)
                yield page
                if page.cursor and page.cursor.get("done"):
                    return
        finally:
            reader.close()

    def _open(self, cursor: dict[str, Any] | None) -> _PageReader | None:
        path = self.options.path
        try:
            current = fingerprint(path)
        except FileNotFoundError:
            raise SourceError(f"{path}: no such file", code="FILE_MISSING") from None
        except OSError as error:
            raise SourceError(f"{path}: cannot read ({error.strerror})", code="FILE_IO") from None
        resume = 0
        if cursor and cursor.get("fingerprint") == current:
            if cursor.get("done"):
                return None
            line = cursor.get("line")
            resume = line if isinstance(line, int) and not isinstance(line, bool) else 0
        rows: _Rows
        if self.options.format == "xlsx":
            rows = _XlsxRows(self.options, resume=resume)
        else:
            rows = _CsvRows(self.options, resume=resume)
        return _PageReader(rows, fingerprint=current, start_line=rows.lines_read)


class _PageReader:
    """Cuts a file's rows into pages, reading one row ahead so the last page says it is done."""

    def __init__(self, rows: _Rows, *, fingerprint: str, start_line: int) -> None:
        self.rows = rows
        self.fingerprint = fingerprint
        self.line = start_line
        self._iterator = iter(rows)
        self._ahead: tuple[int, Item] | None = None

    def _next(self) -> tuple[int, Item] | None:
        try:
            return next(self._iterator, None)
        except OSError as error:
            where = self.rows.path
            raise SourceError(f"{where}: cannot read ({error.strerror})", code="FILE_IO") from None

    def next_page(self, size: int) -> Page:
        records: list[Record] = []
        malformed: list[Malformed] = []
        taken, self._ahead = self._ahead, None
        for _ in range(size):
            if taken is None and (taken := self._next()) is None:
                break
            self.line, item = taken
            if type(item) is Record:
                records.append(item)
            else:
                malformed.append(cast(Malformed, item))
            taken = None
        self._ahead = self._next()
        cursor: dict[str, Any] = {"fingerprint": self.fingerprint, "line": self.line}
        if self._ahead is None:
            # Blank lines after the last record are consumed too.
            cursor["line"] = max(self.line, self.rows.lines_read)
            cursor["done"] = True
        return Page(records=records, cursor=cursor, malformed=malformed)

    def close(self) -> None:
        self.rows.close()


def _item(header: list[str], cells: Sequence[str], line: int, raw: Any) -> Item | None:
    """A row's cells as a record, a Malformed row, or None for a blank row."""
    if not "".join(cells).strip():
        return None
    used = len(cells)
    while used > len(header) and not cells[used - 1].strip():
        used -= 1
    position = f"line {line}"
    if used > len(header):
        reason = f"{used} cells, but the header has {len(header)}"
        return Malformed(raw=raw, position=position, reason=reason)
    return Record(payload=dict(zip(header, cells, strict=False)), position=position)


def _header(cells: Sequence[str], *, line: int, path: Path) -> list[str]:
    names = [cell.strip() for cell in cells]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise SourceError(f"{path}: header row (line {line}) is empty", code="BAD_HEADER")
    seen: set[str] = set()
    for column, name in enumerate(names, start=1):
        if not name:
            raise SourceError(
                f"{path}: header cell {column} (line {line}) is empty", code="BAD_HEADER"
            )
        if name in seen:
            raise SourceError(
                f"{path}: header {name!r} appears more than once (line {line})",
                code="BAD_HEADER",
            )
        seen.add(name)
    return names


# --- CSV ---------------------------------------------------------------------------------------


def detect_encoding(stream: IO[bytes]) -> str:
    """utf-8-sig for a BOM; utf-8 if the first chunks decode strictly; else gb18030.

    Reads at most DETECT_LIMIT bytes, stopping early once non-ASCII text has decoded: GBK text
    almost never passes as UTF-8 for more than a few characters."""
    stream.seek(0)
    if stream.read(len(_BOM)) == _BOM:
        return "utf-8-sig"
    stream.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    read = 0
    while read < DETECT_LIMIT:
        chunk = stream.read(DETECT_CHUNK)
        if not chunk:
            break
        read += len(chunk)
        try:
            decoder.decode(chunk)  # final=False: a character cut by the chunk's end is fine
        except UnicodeDecodeError:
            return "gb18030"
        if not chunk.isascii():
            break
    return "utf-8"


class _Lines:
    """The physical lines of a binary stream, decoded one at a time, for csv.reader.

    Splitting on b"\\n" is safe in UTF-8, GBK and GB18030: none uses 0x0A inside a character.
    A line that does not decode (or is too long) is still handed to csv, decoded with
    backslash escapes, so csv stays in step; the row it ends up in is then reported Malformed."""

    def __init__(self, stream: IO[bytes], encoding: str) -> None:
        self.stream = stream
        self.encoding = encoding
        self.number = 0
        self.taken: list[str] = []
        self.faults: list[str] = []

    def begin(self) -> None:
        self.taken.clear()
        if self.faults:
            self.faults.clear()

    def text(self) -> str:
        return "".join(self.taken).rstrip("\r\n")

    def skip(self, upto: int) -> None:
        """Pass over lines up to `upto` without decoding them (resuming, or above the header)."""
        readline = self.stream.readline
        while self.number < upto:
            raw = readline(MAX_LINE_BYTES)
            if not raw:
                return
            self.number += 1
            while len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raw = readline(MAX_LINE_BYTES)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self.stream.readline(MAX_LINE_BYTES)
        if not raw:
            raise StopIteration
        self.number += 1
        if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
            return self._overlong(raw)
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError:
            text = raw.decode(self.encoding, "backslashreplace")
            self.faults.append(f"line {self.number} is not valid {self.encoding} text")
        self.taken.append(text)
        return text

    def _overlong(self, head: bytes) -> str:
        """Skip the rest of an overlong line in bounded reads; keep its start for the report."""
        while (rest := self.stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
            pass
        self.faults.append(f"line {self.number} is longer than {MAX_LINE_BYTES} bytes")
        self.taken.append(head[:200].decode(self.encoding, "backslashreplace") + "...")
        return "\n"  # csv sees an empty line; the fault makes the row Malformed


class _CsvRows:
    def __init__(self, options: FileOptions, *, resume: int) -> None:
        self.path = options.path
        self._stream = options.path.open("rb")
        try:
            encoding = options.encoding
            if encoding == "auto":
                encoding = detect_encoding(self._stream)
            self._stream.seek(0)
            if encoding in ("utf-8", "utf-8-sig"):
                # Strip a BOM whichever UTF-8 was named, or the first header would carry it.
                if self._stream.read(len(_BOM)) != _BOM:
                    self._stream.seek(0)
                encoding = "utf-8"
            self.lines = _Lines(self._stream, encoding)
            # strict: a stray quote makes a row Malformed rather than silently merging cells.
            self._reader = csv.reader(self.lines, delimiter=options.delimiter, strict=True)
            self.header = self._read_header(options.header_row)
            self.lines.skip(resume)
        except BaseException:
            self._stream.close()
            raise

    @property
    def lines_read(self) -> int:
        return self.lines.number

    def _read_header(self, header_row: int) -> list[str]:
        self.lines.skip(header_row - 1)
        self.lines.begin()
        line = self.lines.number + 1
        try:
            cells = next(self._reader)
        except StopIteration:
            raise SourceError(
                f"{self.path}: no header row (line {line})", code="BAD_HEADER"
            ) from None
        except csv.Error as error:
            raise SourceError(
                f"{self.path}: header row (line {line}) is not CSV: {error}", code="BAD_HEADER"
            ) from None
        if self.lines.faults:
            raise SourceError(f"{self.path}: header row: {self.lines.faults[0]}", code="BAD_HEADER")
        return _header(cells, line=line, path=self.path)

    def __iter__(self) -> Iterator[tuple[int, Item]]:
        lines, reader, header = self.lines, self._reader, self.header
        width = len(header)
        while True:
            lines.begin()
            line = lines.number + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                reason = f"not readable as CSV: {error}"
                yield lines.number, Malformed(lines.text(), f"line {line}", reason)
                continue
            if lines.faults:
                reason = "; ".join(lines.faults)
                yield lines.number, Malformed(lines.text(), f"line {line}", reason)
            elif len(cells) <= width and cells and cells[0].strip():
                # The common row, kept cheap: a dump may have millions.
                yield lines.number, Record(dict(zip(header, cells, strict=False)), f"line {line}")
            elif (item := _item(header, cells, line, cells)) is not None:
                yield lines.number, item

    def close(self) -> None:
        self._stream.close()


# --- XLSX --------------------------------------------------------------------------------------


def cell_text(value: Any) -> str:
    """A cell or export value as text: integral numbers without ".0", dates ISO, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


class _XlsxRows:
    def __init__(self, options: FileOptions, *, resume: int) -> None:
        from openpyxl import load_workbook  # only runs that read XLSX pay for the import

        self.path = options.path
        try:
            self._book = load_workbook(options.path, read_only=True, data_only=True)
        except Exception as error:  # zipfile, XML and openpyxl's own errors: all mean "not XLSX"
            name = type(error).__name__
            raise SourceError(f"{self.path}: not a readable XLSX workbook ({name})") from None
        try:
            sheet = self._sheet(options.sheet)
            # Some exporters write a wrong <dimension>; without it openpyxl reads every row.
            sheet.reset_dimensions()
            self._rows = enumerate(sheet.iter_rows(values_only=True), start=1)
            self.lines_read = 0
            self.header = self._read_header(options.header_row)
            while self.lines_read < resume:
                taken = next(self._rows, None)
                if taken is None:
                    break
                self.lines_read = taken[0]
        except BaseException:
            self._book.close()
            raise

    def _sheet(self, sheet: str | int | None) -> Any:
        names = self._book.sheetnames
        if sheet is None:
            return self._book.worksheets[0]
        if isinstance(sheet, int):
            if sheet > len(names):
                raise SourceError(f"{self.path}: has {len(names)} sheets, not {sheet}")
            return self._book.worksheets[sheet - 1]
        if sheet not in names:
            raise SourceError(f"{self.path}: no sheet {sheet!r} (has {', '.join(names)})")
        return self._book[sheet]

    def _read_header(self, header_row: int) -> list[str]:
        for number, values in self._rows:
            self.lines_read = number
            if number == header_row:
                return _header([cell_text(v) for v in values], line=number, path=self.path)
        raise SourceError(f"{self.path}: no header row (row {header_row})", code="BAD_HEADER")

    def __iter__(self) -> Iterator[tuple[int, Item]]:
        for number, values in self._rows:
            self.lines_read = number
            cells = [cell_text(v) for v in values]
            # A sheet has no short rows: a cell not stored is an empty cell.
            cells.extend([""] * (len(self.header) - len(cells)))
            item = _item(self.header, cells, number, cells)
            if item is not None:
                yield number, item

    def close(self) -> None:
        self._book.close()


# --- export ------------------------------------------------------------------------------------


def write_csv(
    path: Path,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    encoding: str = "utf-8-sig",
) -> int:
    """Stream rows into a CSV file (replaced whole, never half-written); returns the row count.

    utf-8-sig by default: Excel as installed in China reads a BOM-less file as GBK."""
    if encoding.lower() not in WRITE_ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(WRITE_ENCODINGS)}")
    count = 0
    with _replacing(path) as temporary, temporary.open("w", encoding=encoding, newline="") as out:
        writer = csv.writer(out)
        writer.writerow([cell_text(cell) for cell in header])
        for row in rows:
            writer.writerow([cell_text(cell) for cell in row])
            count += 1
        out.flush()
        os.fsync(out.fileno())  # the rename must not land before the data
    return count


def write_xlsx(
    path: Path,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    sheet: str = "residents",
) -> int:
    """Stream rows into an XLSX workbook (openpyxl write-only); returns the row count.

    Every value is a text cell: an ID number or a code with leading zeros stored as a number
    would be changed by Excel, and text starting with "=" must not become a formula."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook(write_only=True)
    worksheet = book.create_sheet(sheet)

    def cells(values: Sequence[Any]) -> list[WriteOnlyCell | None]:
        out: list[WriteOnlyCell | None] = []
        for value in values:
            text = ILLEGAL_CHARACTERS_RE.sub("", cell_text(value))  # XML cannot hold them
            if not text:
                out.append(None)
                continue
            cell = WriteOnlyCell(worksheet, value=text)
            cell.data_type = "s"  # a string, even if it starts with "="
            out.append(cell)
        return out

    count = 0
    try:
        worksheet.append(cells(header))
        for row in rows:
            worksheet.append(cells(row))
            count += 1
    except BaseException:
        # Finish openpyxl's row writer now: left to the garbage collector it writes to a closed
        # file, and its spool file would stay on disk until the process exits.
        worksheet.close()
        writer = getattr(worksheet, "_writer", None)
        if writer is not None:
            writer.cleanup()
        raise
    with _replacing(path) as temporary:
        book.save(temporary)
    return count


@contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside `target`, renamed over it on success and removed on failure."""
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, target)
