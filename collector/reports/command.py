"""`wardwatch-collector report KIND …`: open the store, build, render, write the file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from collector.config import CollectorConfig
from collector.period import parse_period
from collector.reports import build_report, render_report
from collector.store import Store, utcnow


async def _render(config: CollectorConfig, kind: str, *, start: str | None, end: str | None,
                  systems: list[str] | None, fmt: str, lang: str) -> bytes:
    now = utcnow()
    begin, finish = parse_period(start, end, config.zone, now)
    store = await Store.open(config.store, synchronous=config.store_synchronous)
    try:
        report = await build_report(config, store, kind, start=begin, end=finish,
                                    systems=systems, lang=lang, now=now)
    finally:
        await store.close()
    # rendering is CPU work: off the loop, although nothing else runs in the CLI
    return await asyncio.to_thread(render_report, report, fmt)


def write_report(config: CollectorConfig, kind: str, *, start: str | None, end: str | None,
                 systems: list[str] | None, fmt: str, lang: str, output: str) -> int:
    data = asyncio.run(_render(config, kind, start=start, end=end, systems=systems, fmt=fmt,
                               lang=lang))
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(output).write_bytes(data)
    return 0
