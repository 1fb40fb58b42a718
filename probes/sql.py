"""What the database probes (`postgres`, `mysql`) share: custom SQL checks, the cause list that
becomes one summary line, and file-age helpers for backups.

Owns the `queries:` config (a named query, the columns that become metrics or labels,
thresholds per column) and its evaluation on rows already fetched; `Findings` (the shared one
in probes.result, plus notes for an ok summary) and `verdict` over it. No database driver is
imported here: each probe runs its own queries.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from probes.config import StrictModel, Threshold
from probes.result import SUMMARY_LIMIT, Cause, ProbeResult, Status
from probes.result import Findings as BaseFindings
from probes.result import verdict as shared_verdict


class SqlQuery(StrictModel):
    """A custom check: one read-only query; chosen columns become metrics, others labels.

    Each row gives one sample per metric column, labelled by `labels` columns; a threshold on
    a column is evaluated on every row (the worst row wins). The query runs in a read-only
    transaction under the check's statement timeout.
    """

    name: str = Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=64)
    sql: str = Field(min_length=1)
    metrics: list[str] = Field(default_factory=list)
    """Columns that become metrics; empty: every numeric column that is not a label."""
    labels: list[str] = Field(default_factory=list)
    """Columns whose text becomes a label of each row's samples."""
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    """column -> levels; crossing one is reason `query_threshold`."""
    max_rows: int = Field(default=100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _columns(self) -> SqlQuery:
        overlap = set(self.metrics) & set(self.labels)
        if overlap:
            raise ValueError(f"columns {sorted(overlap)} cannot be both metrics and labels")
        for column in self.labels:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", column) or column in {
                    "query", "column"}:
                raise ValueError(f"label column {column!r} is not a usable label name")
        if self.metrics:
            missing = set(self.thresholds) - set(self.metrics)
            if missing:
                raise ValueError(f"thresholds on {sorted(missing)}, which are not in metrics")
        return self


@dataclass
class Findings(BaseFindings):
    """`probes.result.Findings` plus short facts for an ok summary (`3 events enabled`)."""

    notes: list[str] = field(default_factory=list)

    def cause(self, status: Status, reason: str, text: str) -> None:
        self.causes.append(Cause(status, reason, text))


def one_line(text: str, limit: int = 160) -> str:
    """The first non-empty line of a server message, cut to `limit` characters."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def verdict(name: str, findings: Findings) -> ProbeResult:
    """The shared `probes.result.verdict`: the worst cause names the result and leads the
    one-line summary; an ok run lists the notes."""
    ok_line = f"{name}: " + (", ".join(findings.notes) if findings.notes else "ok")
    if len(ok_line) > SUMMARY_LIMIT:
        ok_line = ok_line[: SUMMARY_LIMIT - 1] + "…"
    causes = [Cause(c.status, c.reason, " ".join(c.text.split())) for c in findings.causes]
    return shared_verdict(name, causes, ok_line, metrics=tuple(findings.metrics),
                          details=findings.details)


def number(value: Any) -> float | None:
    """A SQL value as a float sample; None for NULL and for what is not a number."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | decimal.Decimal):
        out = float(value)
        return out if math.isfinite(out) else None
    if isinstance(value, str | bytes):   # SHOW STATUS and some drivers give numbers as text
        try:
            out = float(value)
        except ValueError:
            return None
        return out if math.isfinite(out) else None
    return None


def evaluate_query(kind: str, query: SqlQuery, columns: Sequence[str],
                   rows: Sequence[Mapping[str, Any]], findings: Findings) -> None:
    """Turn a custom query's rows into `<kind>_query_value` samples and threshold causes."""
    label_columns = [c for c in query.labels if c in columns]
    missing = [c for c in [*query.labels, *query.metrics] if c not in columns]
    if missing:
        findings.cause(Status.UNKNOWN, "query_invalid",
                       f"query {query.name} returns no column {', '.join(missing)}")
        return
    findings.metric(f"{kind}_query_rows", len(rows), query=query.name)
    value_columns = query.metrics or [c for c in columns if c not in label_columns]
    worst: dict[str, tuple[Status, float, str]] = {}
    for row in rows[: query.max_rows]:
        labels = {c: "" if row[c] is None else str(row[c]) for c in label_columns}
        for column in value_columns:
            value = number(row[column])
            if value is None:
                if query.metrics and row[column] is not None:
                    findings.cause(Status.UNKNOWN, "query_invalid",
                                   f"query {query.name}: column {column} is not a number")
                    return
                continue
            findings.metric(f"{kind}_query_value", value, query=query.name, column=column,
                            **labels)
            threshold = query.thresholds.get(column)
            if threshold is None:
                continue
            level = threshold.evaluate(value)
            where = ",".join(f"{k}={v}" for k, v in labels.items())
            if level is not Status.OK and (column not in worst
                                           or level.severity > worst[column][0].severity):
                worst[column] = (level, value, where)
    for column, (level, value, where) in worst.items():
        threshold = query.thresholds[column]
        limit = threshold.critical if level is Status.CRITICAL else threshold.warning
        sign = "≥" if threshold.direction == "above" else "≤"
        at = f" ({where})" if where else ""
        findings.cause(level, "query_threshold",
                       f"query {query.name}: {column}={value:g}{at} {sign} {limit:g}")
    if len(rows) > query.max_rows:
        findings.details.setdefault("queries_cut", []).append(query.name)


def since_text(moment: datetime, now: datetime) -> str:
    """`02:00` for today (local time), `11-24 02:00` for an older moment."""
    local, today = moment.astimezone(), now.astimezone()
    if local.date() == today.date():
        return local.strftime("%H:%M")
    return local.strftime("%m-%d %H:%M")


def age_text(seconds: float) -> str:
    """`45s`, `12m`, `5.5h`, `3.2d`."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
