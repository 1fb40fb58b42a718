"""Collector config: the sample validates; errors name the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import load_collector_config, parse_collector_config
from probes.config import ConfigError

SAMPLE = Path(__file__).parents[2] / "deploy" / "collector.sample.yaml"


def test_sample_validates() -> None:
    config = load_collector_config(SAMPLE)
    emr = config.system("EMR")
    assert emr.core and emr.target == 0.995 and emr.unknown_counts_as == "down"
    assert config.system("APPT").unknown_counts_as == "excluded"
    assert config.zone.key == "Asia/Shanghai"


@pytest.mark.parametrize(("data", "expected"), [
    ({"timezone": "Mars/Olympus"}, "timezone: unknown time zone 'Mars/Olympus'"),
    ({"listen": "0.0.0.0:9800"}, "needs tls"),
    ({"systems": [{"id": "EMR", "members": ["emr/web"], "target": 1.5}]},
     "systems[0].target: Input should be less than or equal to 1"),
    ({"systems": [{"id": "EMR"}]}, "systems[0]: rule 'all' needs members"),
    ({"systems": [{"id": "EMR", "members": ["no-slash"]}]}, "systems[0].rule"),
    ({"systems": [{"id": "A", "members": ["a/b"]}, {"id": "A", "members": ["a/b"]}]},
     "system id 'A' is used twice"),
    ({"systems": [{"id": "A", "members": ["a/b"], "schedule": [
        {"days": "mon-fri", "start": "07:30", "end": "25:00"}]}]}, "systems[0].schedule"),
    ({"stores": "sqlite:///x"}, "stores: unknown key"),
])
def test_errors_name_the_path(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_collector_config(data, "collector.yaml")
    assert expected in str(info.value), str(info.value)
