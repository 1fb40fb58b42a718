"""bench/suite.py: reading a bench's output, ratios inside one run, min / median / max and
verdicts over runs, and the generated section of docs/benchmarks.md. No bench is run."""

from __future__ import annotations

import json

import pytest

from bench.suite import (
    BEGIN,
    BENCHES,
    END,
    Bench,
    Figure,
    Target,
    agent_figures,
    aggregate,
    collector_figures,
    last_json,
    section,
    select,
    table,
    write_docs,
)


def test_last_json_takes_the_last_object_whatever_surrounds_it() -> None:
    first = json.dumps({"n": 1})
    last = json.dumps({"n": 2, "nested": {"a": [1, 2]}}, indent=2)
    text = f"a table\n{first}\nmore text\n{{ not json\n{last}\nwarning: at exit\n"
    assert last_json(text) == {"n": 2, "nested": {"a": [1, 2]}}
    assert last_json("no json here\n[1, 2]\n") is None


def _agent_run(agent_rss_kb: int, node_rss_kb: int, agent_cpu: float, node_cpu: float,
               agent_round_s: float, blackbox_round_s: float) -> dict[str, object]:
    return {
        "rss_kb": {"agent": {"after_round": {"VmRSS": agent_rss_kb // 2},
                             "after_scrapes": {"VmRSS": agent_rss_kb}},
                   "node_exporter": {"VmRSS": node_rss_kb}},
        "scrapes": {"agent/plain": {"cpu_per_scrape_ms": agent_cpu, "median_ms": 1.0},
                    "node_exporter/plain": {"cpu_per_scrape_ms": node_cpu}},
        "idle": {"agent_pct_of_core": 0.2},
        "throughput": {"checks": 1000,
                       # the first (cold) round is left out of the warm median
                       "agent_in_process": {"rounds": [{"wall_s": 99.0},
                                                       {"wall_s": agent_round_s},
                                                       {"wall_s": agent_round_s}]},
                       "blackbox": {"rounds": [{"wall_s": 99.0}, {"wall_s": blackbox_round_s}]}},
    }


def test_comparisons_are_ratios_within_one_run() -> None:
    figures = agent_figures(_agent_run(40 * 1024, 20 * 1024, 0.3, 0.2, 0.5, 1.0))
    assert figures["agent.rss_mb"] == 40.0           # the largest sample
    assert figures["agent.rss_ratio"] == 2.0
    assert figures["agent.scrape_cpu_ratio"] == pytest.approx(1.5)
    assert figures["agent.probes_per_s"] == 2000.0   # warm rounds only
    assert figures["agent.probes_ratio"] == 2.0


def test_ratios_are_aggregated_as_ratios_not_as_ratios_of_medians() -> None:
    agent = next(b for b in BENCHES if b.name == "agent")
    # run 1: the machine is fast for both; run 2: slow for both; the ratio holds at 2
    runs = [agent_figures(_agent_run(40 * 1024, 20 * 1024, 0.2, 0.1, 0.5, 1.0)),
            agent_figures(_agent_run(80 * 1024, 40 * 1024, 0.8, 0.4, 2.0, 4.0))]
    rows = {r.figure.key: r for r in aggregate(agent, runs)}
    assert rows["agent.rss_ratio"].values == (2.0, 2.0)
    assert rows["agent.rss_ratio"].verdict == "PASS"            # <= 3
    assert rows["agent.scrape_cpu_ratio"].values == (2.0, 2.0)
    assert rows["agent.scrape_cpu_ratio"].verdict == "PASS"     # <= 2
    assert rows["agent.probes_ratio"].median == 2.0


def test_min_median_max_met_and_verdict() -> None:
    bench = Bench("x", "bench/x.py", (), (), 1, 1, (
        Figure("x.rate", "rate", Target(">=", 10)),
        Figure("x.info", "info"),
        Figure("x.missing", "never measured", Target("<=", 1)),
    ), lambda d: {})
    runs: list[dict[str, float | None]] = [{"x.rate": 12.0, "x.info": 1.0},
                                           {"x.rate": 8.0, "x.info": None}, {"x.rate": 11.0}]
    rate, info, missing = aggregate(bench, runs)
    assert (rate.lo, rate.median, rate.hi) == (8.0, 11.0, 12.0)
    assert rate.met == 2 and rate.verdict == "PASS"
    assert info.values == (1.0,) and info.verdict == "info" and info.met is None
    assert missing.values == () and missing.verdict == "no data"
    text = table([rate, info, missing])
    assert "| x | rate | 3/3 | 8 | 11 | 12 | ≥ 10 | 2/3 | PASS |" in text
    assert "| x | never measured | 0/3 | — | — | — | ≤ 1 |  | **no data** |" in text


def test_collector_figures_from_its_json_shape() -> None:
    data = {
        "ingest": {
            "sqlite-full": {"results_per_s": 9000.0, "latency_ms": {"p95": 80.0},
                            "collector_cpu_ms_per_1000_results": 50.0,
                            "incident_evaluations": {"count": 4.0, "sum_s": 0.2},
                            "all_stored": True, "errors": 0},
            "postgresql": {"results_per_s": 5000.0, "latency_ms": {"p95": 120.0},
                           "incident_evaluations": {"count": None, "sum_s": None},
                           "all_stored": False, "errors": 0},
        },
        "availability": {"sqlite": {"warm_ms": {"p95": 90.0},
                                    "get_systems": [{"wall_s": 2.0}, {"wall_s": 4.0}]}},
    }
    f = collector_figures(data)
    assert f["collector.ingest_sqlite_full_rps"] == 9000.0
    assert f["collector.evaluation_sqlite_full_ms"] == pytest.approx(50.0)
    assert f["collector.evaluation_postgresql_ms"] is None
    assert f["collector.ingest_runs_lossy"] == 1.0        # PostgreSQL lost a result
    assert f["collector.availability_sqlite_p95_ms"] == 90.0
    assert f["collector.systems_api_sqlite_s"] == 3.0
    assert "collector.availability_postgresql_p95_ms" not in f
    assert f["collector.raw_bytes_per_result"] is None    # growth not run


def test_docs_section_inserted_under_the_title_then_replaced() -> None:
    doc = "# Benchmarks\n\n## Agent\n\ntext\n"
    first = write_docs(doc, f"{BEGIN}\none\n{END}")
    assert first.startswith(f"# Benchmarks\n\n{BEGIN}\none\n{END}\n")
    assert first.endswith("## Agent\n\ntext\n")
    second = write_docs(first, f"{BEGIN}\ntwo\n{END}")
    assert second == first.replace("one", "two")
    assert write_docs(second, f"{BEGIN}\ntwo\n{END}") == second


def test_select() -> None:
    assert "bundle" not in [b.name for b in select(None)]
    assert [b.name for b in select("board, collector")] == ["board", "collector"]
    with pytest.raises(SystemExit, match="unknown bench nope"):
        select("board,nope")


def test_section_names_the_machine_links_the_scale_model_and_fits_the_markers() -> None:
    board = next(b for b in BENCHES if b.name == "board")
    rows = aggregate(board, [{"board.p95_ms": 80.0}, {"board.p95_ms": 120.0}])
    meta = {"date": "2026-12-07 10:00 UTC", "commit": "abc1234+dirty", "quick": True,
            "runs": 2, "benches": ["board"], "wall_s": 120.0,
            "loadavg_before": ["2.0", "1.0", "0.5"], "loadavg_after": ["2.5", "1.2", "0.6"],
            "machine": {"nproc": 2, "cpu_model": "Xeon", "memory_gib": 23.5, "kernel": "6.1",
                        "python": "3.11.7", "sqlite": "3.40.1", "postgresql": None}}
    block = section(meta, rows, "suite-x.json")
    text = " ".join(block.split())
    assert block.startswith(BEGIN) and block.endswith(END)
    assert "## The suite: `bench/suite.py`" in block
    assert "[scale.md](scale.md)" in text
    assert "commit `abc1234+dirty`" in text and "PostgreSQL not reachable" in text
    assert "load average 2.0 1.0 0.5 before, 2.5 1.2 0.6 after" in text
    assert "| board | board.json p95 round trip, ms (300 hosts, 50 systems) | 2/2 | 80.0 | " \
           "100.0 | 120.0 | ≤ 100 | 1/2 | PASS |" in block
