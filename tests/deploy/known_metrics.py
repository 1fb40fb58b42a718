"""The metric names the shipped Prometheus rules and Grafana dashboards may use, taken from
what wardwatch really exports, and the metric names a PromQL expression refers to.

Known names come from three places: the /metrics of a real collector and a real agent
running in-process (the agent pushing to the collector, so push, last-seen and per-check
families all have samples), every probe's documented `METRICS` list (a probe's metric `NAME`
is exported as `wardwatch_NAME`), and Prometheus' own `up`. Recording rules add their names.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent.app import AGENT_KEY
from agent.app import create_app as create_agent_app
from agent.config import parse_agent_config
from collector.app import STORE_KEY, create_app, refresh_system_metrics
from collector.config import parse_collector_config
from probes.registry import KINDS, get_kind
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
PROMETHEUS_BUILTINS = frozenset({"up"})

_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                              "_created"),
             "summary": ("_sum", "_count", "_created")}


def names_in_exposition(text: str) -> set[str]:
    """Every family and sample name of a Prometheus text exposition, families without
    samples yet (labelled metrics nobody observed) included with their sample suffixes."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def documented_probe_metrics() -> set[str]:
    return {"wardwatch_" + name for kind in KINDS for name in get_kind(kind).metrics}


def recorded_names() -> set[str]:
    names = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200, url
        return await resp.text()


async def real_exposition(tmp: Path) -> tuple[str, str]:
    """(collector /metrics, agent /metrics) after the agent ran a check and pushed it."""
    collector_app = create_app(parse_collector_config({
        "store": f"sqlite:///{tmp}/collector.db",
        "systems": [{"id": "EMR", "name": "EMR", "core": True, "members": ["emr-app-01/*"]}]}))
    collector_runner, collector_url = await _serve(collector_app)
    try:
        token = await collector_app[STORE_KEY].add_agent("emr-app-01", datetime.now(UTC))
        (tmp / "agent.token").write_text(token)
        agent_app = create_agent_app(parse_agent_config({
            "agent": {"id": "emr-app-01", "state_dir": str(tmp / "agent")},
            "collector": {"url": collector_url, "token_file": str(tmp / "agent.token"),
                          "push_interval": "0.2s"},
            "checks": [{"id": "host", "kind": "host", "system": "EMR", "interval": "2s",
                        "timeout": "2s", "cpu_sample_seconds": "0.2s"}]}))
        agent_runner, agent_url = await _serve(agent_app)
        try:
            agent = agent_app[AGENT_KEY]
            arrived = asyncio.Event()
            agent.add_result_listener(lambda _result: arrived.set())
            async with asyncio.timeout(30):
                while not agent.state.latest:
                    arrived.clear()
                    await arrived.wait()
                # until the collector has the push (its last-seen gauge has a sample): the
                # agent pushes on its own schedule, so the collector's /metrics is polled
                while True:
                    collector_text = await _get(collector_url + "/metrics")
                    if "wardwatch_collector_agent_last_seen_timestamp_seconds{" in collector_text:
                        break
                    await asyncio.sleep(0.1)
            await refresh_system_metrics(collector_app)
            collector_text = await _get(collector_url + "/metrics")
            agent_text = await _get(agent_url + "/metrics")
        finally:
            await agent_runner.cleanup()
    finally:
        with contextlib.suppress(Exception):
            await collector_runner.cleanup()
    return collector_text, agent_text


async def known_metric_names(tmp: Path) -> set[str]:
    collector_text, agent_text = await real_exposition(tmp)
    return (names_in_exposition(collector_text) | names_in_exposition(agent_text)
            | documented_probe_metrics() | PROMETHEUS_BUILTINS)


# -- PromQL -----------------------------------------------------------------------------

_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
    # aggregation operators, which may stand before their grouping clause: `max by (x) (…)`
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile"})
_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<labels>\{[^}]*\})
  | (?P<range>\[[^\]]*\])
  | (?P<grouping>\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))
  | (?P<variable>\$\{[^}]*\}|\$\w+)
  | (?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:e[+-]?\d+)?)(?:ms|[smhdwy])*)
  | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<call>\s*\()?
""", re.VERBOSE)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, label names in
    matchers and grouping clauses, durations and template variables left out)."""
    names = set()
    for match in _TOKEN.finditer(expr):
        name = match.group("name")
        if name is not None and match.group("call") is None and name not in _KEYWORDS:
            names.add(name)
    return names
