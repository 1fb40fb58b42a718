"""System state from component states: all / any / at_least / nested trees, and globs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from collector.rules import AllOf, AnyOf, AtLeast, State, build_rule, evaluate, leaves


def states(**by_check: State) -> dict[tuple[str, str], State]:
    return {tuple(k.split("__")): v for k, v in by_check.items()}  # type: ignore[misc]


EMR = build_rule({"all": ["emr-db-01/oracle",
                          {"at_least": 1, "of": ["emr-app-01/web", "emr-app-02/web"]}]}, [])


@pytest.mark.parametrize(("db", "app1", "app2", "expected"), [
    ("up", "up", "up", "up"),
    ("up", "down", "up", "degraded"),       # one app server down: business runs (level 2)
    ("up", "down", "down", "down"),
    ("down", "up", "up", "down"),
    ("up", "unknown", "down", "unknown"),   # could be either: we cannot tell
    ("up", "unknown", "up", "degraded"),
    ("unknown", "up", "up", "unknown"),
    ("degraded", "up", "up", "degraded"),
    ("up", "degraded", "degraded", "degraded"),
])
def test_emr_rule(db: State, app1: State, app2: State, expected: State) -> None:
    got = evaluate(EMR, states(**{"emr-db-01__oracle": db, "emr-app-01__web": app1,
                                  "emr-app-02__web": app2}))
    assert got == expected


def test_simple_rules_over_members() -> None:
    members = ["his-*/tcp", "his-db/ping"]
    assert isinstance(build_rule("all", members), AllOf)
    assert isinstance(build_rule("any", members), AnyOf)
    at_least = build_rule({"at_least": 2}, members)
    assert isinstance(at_least, AtLeast) and at_least.at_least == 2
    assert leaves(build_rule("all", members)) == members


def test_glob_parts_join_their_group_and_missing_member_is_unknown() -> None:
    rule = build_rule("all", ["his-app-*/web"])
    assert evaluate(rule, states(**{"his-app-1__web": "up", "his-app-2__web": "up"})) == "up"
    assert evaluate(rule, states(**{"his-app-1__web": "up", "his-app-2__web": "down"})) == "down"
    assert evaluate(rule, states(**{"other__web": "up"})) == "unknown"
    one_of = build_rule({"at_least": 1}, ["his-app-*/web"])
    assert evaluate(one_of, states(**{"his-app-1__web": "up", "his-app-2__web": "down"})) \
        == "degraded"
    two_of = build_rule({"at_least": 2}, ["his-app-*/web"])  # a glob may stand for several
    assert evaluate(two_of, states(**{"his-app-1__web": "up", "his-app-2__web": "up",
                                      "his-app-3__web": "down"})) == "degraded"


def test_invalid_rules() -> None:
    with pytest.raises(ValidationError, match="more than the 2 parts"):
        build_rule({"at_least": 3}, ["a/b", "c/d"])
    with pytest.raises(ValueError, match="needs members"):
        build_rule("all", [])
    with pytest.raises(ValidationError):
        build_rule({"all": ["not-a-member"]}, [])
    with pytest.raises(ValueError, match="rule must be"):
        build_rule("majority", ["a/b"])
