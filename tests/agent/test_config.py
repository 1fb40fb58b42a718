"""Agent config: every error names its path; secrets come from env or files only."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_agent_config, parse_agent_config
from probes.config import ConfigError


def errors_of(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_agent_config(data, "agent.yaml")
    return info.value.errors


def test_defaults_fill_interval_and_timeout() -> None:
    cfg = parse_agent_config({
        "agent": {"id": "emr-app-01"},
        "defaults": {"interval": "1m", "timeout": "5s"},
        "checks": [{"id": "db", "kind": "tcp", "host": "127.0.0.1", "port": 1521},
                   {"id": "db2", "kind": "tcp", "host": "127.0.0.1", "port": 1521,
                    "interval": 10, "timeout": "250ms"}],
    })
    assert (cfg.checks[0].interval, cfg.checks[0].timeout) == (60.0, 5.0)
    assert (cfg.checks[1].interval, cfg.checks[1].timeout) == (10.0, 0.25)
    assert cfg.agent.listen == "127.0.0.1:9810"


def test_errors_name_the_path_and_are_all_reported() -> None:
    errors = errors_of({"checks": [
        {"id": "ok", "kind": "tcp", "host": "h", "port": 1},
        {"id": "a", "kind": "tcp", "host": "h", "port": 0, "colour": "red"},
        {"id": "b", "kind": "nope"},
        {"id": "c", "kind": "tcp", "host": "h", "port": 1, "expect": "("},
        {"id": "d", "kind": "tcp", "host": "h", "port": 1, "timeout": "1m", "interval": "30s"},
        {"id": "ok", "kind": "tcp", "host": "h", "port": 2},
        "just a string",
        {"kind": "tcp", "host": "h", "port": 1, "id": "e", "timeout": "soon"},
    ]})
    text = "\n".join(errors)
    assert "checks[1].port: Input should be greater than or equal to 1" in text
    assert "checks[1].colour: unknown key" in text
    assert "checks[2].kind: unknown kind 'nope'" in text
    assert "checks[3].expect: invalid regular expression" in text
    assert "checks[4]: timeout (60s) must not exceed interval (30s)" in text
    assert "checks[5].id: 'ok' is already used by checks[0]" in text
    assert "checks[6]: must be a mapping" in text
    assert "checks[7].timeout: 'soon' is not a duration" in text


def test_yaml_boolean_trap_gets_a_hint() -> None:
    [error] = errors_of({"checks": [{"id": False, "kind": "tcp", "host": "h", "port": 1}]})
    assert error.startswith("checks[0].id:") and "quote the value" in error


def test_non_loopback_listen_needs_tls_or_auth() -> None:
    [error] = errors_of({"agent": {"listen": "0.0.0.0:9810"}})
    assert "not a loopback address" in error and "agent.tls or agent.basic_auth" in error
    assert parse_agent_config({"agent": {"listen": "[::1]:9810"}}).agent.host_port == ("::1", 9810)


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WW_TEST_PASSWORD", "s3cret-env")
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret-file\n")
    for ref, expected in (({"env": "WW_TEST_PASSWORD"}, "s3cret-env"),
                          ({"file": str(secret_file)}, "s3cret-file")):
        cfg = parse_agent_config({"agent": {"listen": "0.0.0.0:9810", "basic_auth": {
            "username": "prom", "password": ref}}})
        assert cfg.agent.basic_auth is not None
        assert cfg.agent.basic_auth.password.get() == expected
        assert expected not in repr(cfg) and expected not in str(cfg.agent.model_dump())


def test_secret_errors(tmp_path: Path) -> None:
    auth = {"listen": "0.0.0.0:1", "basic_auth": {"username": "u", "password": None}}
    cases = {
        "environment variable 'WW_NOT_SET_ANYWHERE' is not set": {"env": "WW_NOT_SET_ANYWHERE"},
        f"cannot read secret file {tmp_path / 'missing'}": {"file": str(tmp_path / "missing")},
        "inline secrets are not accepted": {"value": "hunter2"},
        "give exactly one of": {},
    }
    for message, ref in cases.items():
        auth["basic_auth"]["password"] = ref  # type: ignore[index]
        [error] = errors_of({"agent": auth})
        assert error.startswith("agent.basic_auth.password:"), error
        assert message in error
        assert "hunter2" not in error


def test_load_reports_yaml_syntax_with_position(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("agent:\n  id: x\nchecks: [\n  - id: a\n")
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    assert str(path) in str(info.value) and "YAML syntax error" in str(info.value)
    assert "line" in info.value.errors[0]


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_agent_config(tmp_path / "nope.yaml")


def test_sample_config_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDWATCH_TOMCAT_PASSWORD", "x")
    monkeypatch.setenv("WARDWATCH_WEBLOGIC_PASSWORD", "x")
    sample = Path(__file__).parents[2] / "deploy" / "agent.sample.yaml"
    cfg = load_agent_config(sample)
    assert len(cfg.checks) >= 5
