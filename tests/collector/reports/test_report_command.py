"""`wardwatch-collector report KIND` as a person runs it, and the HTML printed to PDF by
headless Chromium: A4 pages, no table row cut across two pages, table headers repeated on
every page a table continues on."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import openpyxl
import pypdf
import yaml

from collector.schema import check_intervals
from collector.store import Store
from tests.collector.reports.data import SYSTEMS, Y0, Y1, seed_year
from tests.collector.test_report_cli import cli
from tests.services import needs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def seeded(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path}/collector.db"
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"store": url, "systems": SYSTEMS}, allow_unicode=True))

    async def seed() -> None:
        store = await Store.open(url)
        try:
            await seed_year(store)
        finally:
            await store.close()

    asyncio.run(seed())
    return config


def test_every_kind_and_format_from_the_command_line(tmp_path: Path) -> None:
    config = seeded(tmp_path)
    period = ["--from", "2025-01-01", "--to", "2025-12-31"]
    for kind, formats in (("availability", ("json",)), ("incidents", ("json",)),
                          ("patches", ("json",)), ("inspection", ("json",)),
                          ("annual", ("html", "xlsx", "json", "csv"))):
        for fmt in formats:
            out = tmp_path / f"{kind}.{fmt}"
            done = cli(config, "report", kind, *period, "--format", fmt, "-o", str(out))
            assert done.returncode == 0, (kind, fmt, done.stderr)
            assert out.stat().st_size > 0
        data = json.loads((tmp_path / f"{kind}.json").read_text(encoding="utf-8"))
        assert data["kind"] == kind and data["lang"] == "zh-CN"
    annual = json.loads((tmp_path / "annual.json").read_text(encoding="utf-8"))
    emr = next(r for r in annual["tables"][1]["rows"] if r["system"] == "EMR")
    assert emr["availability"] == 0.995
    book = openpyxl.load_workbook(io.BytesIO((tmp_path / "annual.xlsx").read_bytes()))
    assert "合同客观指标考核" in book.sheetnames
    english = cli(config, "report", "availability", *period, "--system", "EMR", "--lang", "en",
                  "--format", "html")
    assert english.returncode == 0 and "System availability report" in english.stdout
    assert "HIS" not in english.stdout.split("<body>")[1]
    bad = cli(config, "report", "annual", "--from", "2025-13-01")
    assert bad.returncode == 2 and "is not a date" in bad.stderr


def _page_boxes(pdf: bytes) -> list[tuple[float, float]]:
    return [(float(w), float(h)) for w, h in
            re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)]


def print_to_pdf(html: Path, tmp_path: Path) -> bytes:
    pdf = tmp_path / f"{html.stem}.pdf"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--no-pdf-header-footer", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--print-to-pdf={pdf}", html.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return pdf.read_bytes()


def test_html_prints_to_a4_with_headless_chromium(tmp_path: Path) -> None:
    needs(Path(CHROMIUM).exists(), "chromium (Debian package; scripts/install-system-packages)")
    config = seeded(tmp_path)
    html = tmp_path / "annual.html"
    done = cli(config, "report", "annual", "--from", "2025-01-01", "--to", "2025-12-31",
               "--format", "html", "-o", str(html))
    assert done.returncode == 0, done.stderr
    boxes = _page_boxes(print_to_pdf(html, tmp_path))
    assert boxes, "no pages in the PDF"
    # A4 is 595.28 × 841.89 pt; Chromium writes 594.96 × 841.92
    for width, height in boxes:
        assert abs(width - 595.3) < 1.5 and abs(height - 841.9) < 1.5, (width, height)


WORDS = ["listener", "refused", "connections", "while", "the", "archive", "job", "held", "the",
         "redo", "log", "and", "the", "standby", "database", "lagged", "behind", "the",
         "primary"]


def seeded_outages(tmp_path: Path) -> Path:
    """The year of `seeded`, plus a system down 150 times, each outage's cause long enough to
    wrap over two or three lines of the down-windows table: tall rows over several pages."""
    config = seeded(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["systems"].append({"id": "PACS", "name": "影像归档", "members": ["pacs-01/web"]})
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    spans, cursor = [], Y0
    for n in range(150):
        down = cursor + timedelta(days=2)
        up = down + timedelta(minutes=5 + n)
        spans += [(cursor, down, "ok", ""),
                  (down, up, "critical",
                   f"outage {n:03d}: {' '.join(WORDS[:4 + n % 13])} (ticket {n:03d})")]
        cursor = up
    spans.append((cursor, Y1, "ok", ""))

    async def seed() -> None:
        store = await Store.open(data["store"])
        try:
            async with store.transaction() as conn:
                await conn.execute(check_intervals.insert(), [
                    {"agent_id": "pacs-01", "check_id": "web", "system": "PACS",
                     "kind": "http", "status": status, "summary": summary,
                     "reason": "ok" if status == "ok" else "connect_refused",
                     "start": start, "end": end, "last_result_at": end, "results": 1,
                     "is_open": False} for start, end, status, summary in spans])
        finally:
            await store.close()

    asyncio.run(seed())
    return config


@dataclass
class HtmlTable:
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


class _Tables(HTMLParser):
    """Every <table>'s header cells and body rows as text (SVG titles are not printed)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[HtmlTable] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False
        self._svg = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(HtmlTable())
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "svg":
            self._svg += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            table = self.tables[-1]
            if self._in_head:
                table.header = self._row
            else:
                table.rows.append(self._row)
            self._row = None
        elif tag == "svg":
            self._svg -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._svg:
            self._cell.append(data)


def _printable(text: str) -> str:
    """Text as compared between HTML and PDF: ligatures undone, whitespace dropped (lines
    wrap differently), and only ASCII kept: without a CJK font installed Chinese prints as
    boxes that extract as NUL, and that must not hide a cut row."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if ch.isascii() and ch.isprintable() and not ch.isspace())


def printed_whole(tables: list[HtmlTable], pages: list[str]) -> list[str]:
    """Problems with how the tables were printed: rows not found whole on one page, and
    pages a table continues on without its header row above its rows there.

    Rows are looked for in document order from where the previous one was found, so a short
    row ("1 0 0") cannot match text that belongs elsewhere."""
    problems = []
    page, offset = 0, 0
    for number, table in enumerate(tables):
        header = "".join(_printable(c) for c in table.header)
        table_page: int | None = None
        for row in table.rows:
            key = "".join(_printable(c) for c in row)
            if not key:
                continue
            found = next(((p, pages[p].find(key, offset if p == page else 0))
                          for p in range(page, len(pages))
                          if pages[p].find(key, offset if p == page else 0) >= 0), None)
            if found is None:
                problems.append(f"table {number}: row not whole on any page: {row}")
                continue
            at_page, at = found
            if (table.header and table_page is not None and at_page != table_page
                    and header not in pages[at_page][:at]):
                problems.append(f"table {number}: no header on page {at_page + 1} "
                                f"above row {row}")
            table_page, page, offset = at_page, at_page, at + len(key)
    return problems


def test_printed_tables_keep_rows_whole_and_repeat_headers(tmp_path: Path) -> None:
    needs(Path(CHROMIUM).exists(), "chromium (Debian package; scripts/install-system-packages)")
    config = seeded_outages(tmp_path)
    html = tmp_path / "annual-en.html"
    done = cli(config, "report", "annual", "--from", "2025-01-01", "--to", "2025-12-31",
               "--lang", "en", "--format", "html", "-o", str(html))
    assert done.returncode == 0, done.stderr
    parser = _Tables()
    parser.feed(html.read_text(encoding="utf-8"))
    windows = next(t for t in parser.tables if t.header[:2] == ["System", "Start"])
    assert len(windows.rows) == 152
    pdf = print_to_pdf(html, tmp_path)
    for width, height in _page_boxes(pdf):
        assert abs(width - 595.3) < 1.5 and abs(height - 841.9) < 1.5, (width, height)
    pages = [_printable(p.extract_text()) for p in pypdf.PdfReader(io.BytesIO(pdf)).pages]
    # the down windows run over several pages, so rows meet page ends and headers repeat
    spanned = [n for n, text in enumerate(pages)
               if _printable(" ".join(windows.rows[-1])) in text
               or _printable(" ".join(windows.rows[0])) in text]
    assert len(pages) >= 4 and spanned[-1] - spanned[0] >= 2, (len(pages), spanned)
    assert printed_whole(parser.tables, pages) == []
    # Chromium's own default already repeats a <thead> (the check above fails when it stops:
    # `display: table-row-group`); the print stylesheet states it for engines that do not
    print_css = html.read_text(encoding="utf-8").split("@media print", 1)[1]
    assert "thead { display: table-header-group; }" in print_css
    assert "tr { break-inside: avoid;" in print_css
