"""deploy/prometheus: the rules pass `promtool check rules` and their unit tests
(`promtool test rules`), the example config is valid, and every metric a rule uses is one
wardwatch really exports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.known_metrics import (
    PROMETHEUS_BUILTINS,
    ROOT,
    RULE_FILES,
    promql_metric_names,
    recorded_names,
)
from tests.services import needs

PROMTOOL = shutil.which("promtool")
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    needs(PROMTOOL is not None, "promtool (Debian package prometheus)")
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, check=False)


def rule_exprs() -> dict[str, str]:
    found = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found[rule.get("alert") or rule["record"]] = rule["expr"]
    return found


def test_rule_files_pass_promtool_check() -> None:
    assert len(RULE_FILES) == 2
    done = promtool("check", "rules", *RULE_FILES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass() -> None:
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    done = promtool("test", "rules", *tests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_example_scrape_config_is_valid(tmp_path: Path) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    # the shipped rule files, and stand-ins for the site's CA and password files
    config["rule_files"] = [str(p) for p in RULE_FILES]
    (tmp_path / "ca.pem").write_text("")
    (tmp_path / "password").write_text("secret\n")
    text = yaml.safe_dump(config).replace("/etc/prometheus/wardwatch-ca.pem",
                                          str(tmp_path / "ca.pem"))
    text = text.replace("/etc/prometheus/wardwatch-agent.password", str(tmp_path / "password"))
    (tmp_path / "prometheus.yml").write_text(text)
    done = promtool("check", "config", "--syntax-only", tmp_path / "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["wardwatch-agents"]["http_sd_configs"][0]["url"].endswith("/api/v1/sd")
    assert "static_configs" in jobs["wardwatch-collector"]


def test_promql_names_are_found() -> None:
    """The extractor the next test relies on, on the shapes the rules use."""
    assert promql_metric_names(
        'max by (system) (sum without (state) (avg_over_time(x_total{state=~"a|b"}[5m])))'
        ' > 175.2 * 0.005 and on (instance) up{job="j"} == 0 or $var > ${ds}') == {
            "x_total", "up"}
    assert promql_metric_names("time() - max by (agent) (wardwatch:a:b) > 26 * 3600") == {
        "wardwatch:a:b"}


def test_every_metric_in_the_rules_is_exported(known_metrics: frozenset[str]) -> None:
    used: dict[str, set[str]] = {}
    for rule, expr in rule_exprs().items():
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add(rule)
    assert len(used) >= 15   # the extractor found the rules' names, not nothing
    assert recorded_names() <= known_metrics
    unknown = {name: rules for name, rules in used.items() if name not in known_metrics}
    assert unknown == {}, f"metrics no wardwatch component exports: {unknown}"
    # the headline families really came from the running processes
    assert {"wardwatch_check_up", "wardwatch_collector_system_state",
            "wardwatch_collector_agent_last_seen_timestamp_seconds",
            "wardwatch_agent_push_last_success_timestamp_seconds"} <= known_metrics
    assert known_metrics >= PROMETHEUS_BUILTINS
