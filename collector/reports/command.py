"""`wardwatch-collector report KIND …`: open the store, build, render, write the file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from collector import unavailable
from collector.config import CollectorConfig
from collector.period import parse_period
from collector.reports import build_report, render_report
from collector.store import Store, StoreError, utcnow


async def _render(config: CollectorConfig, kind: str, *, start: str | None, end: str | None,
                  systems: list[str] | None, fmt: str, lang: str) -> bytes:
    now = utcnow()
    begin, finish = parse_period(start, end, config.zone, now)
    try:
        store = await Store.open(config.store, synchronous=config.store_synchronous)
    except Exception as exc:
        reason = unavailable.cause(exc)   # short and secret-free (no URL, no password)
        if reason is None:
            raise
        raise StoreError(f"cannot open the store: {reason}") from None
    try:
        report = await build_report(config, store, kind, start=begin, end=finish,
                                    systems=systems, lang=lang, now=now)
    finally:
        await store.close()
    # rendering is CPU work: off the loop, although nothing else runs in the CLI
    return await asyncio.to_thread(render_report, report, fmt)


def write_report(config: CollectorConfig, kind: str, *, start: str | None, end: str | None,
                 systems: list[str] | None, fmt: str, lang: str, output: str) -> int:
    """Write the report to `output` (`-`: stdout).

    `output` is the operator's choice, used as given (relative to the working directory,
    `..` and symbolic links followed, an existing file replaced): whoever runs this command
    may write there anyway. Nothing else names a file: the kind, format, language and
    systems are checked against fixed lists and the config, and never become part of a path.
    A path that cannot be written is a ValueError (the command says `error: …`).
    """
    data = asyncio.run(_render(config, kind, start=start, end=end, systems=systems, fmt=fmt,
                               lang=lang))
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    try:
        Path(output).write_bytes(data)
    except OSError as exc:
        raise ValueError(f"cannot write {output}: {exc.strerror or type(exc).__name__}"
                         ) from None
    return 0
