"""The metric names wardwatch really exports, gathered once per test session."""

from __future__ import annotations

import asyncio

import pytest

from tests.deploy.known_metrics import known_metric_names, recorded_names


@pytest.fixture(scope="session")
def known_metrics(tmp_path_factory: pytest.TempPathFactory) -> frozenset[str]:
    tmp = tmp_path_factory.mktemp("known-metrics")
    return frozenset(asyncio.run(known_metric_names(tmp)) | recorded_names())
