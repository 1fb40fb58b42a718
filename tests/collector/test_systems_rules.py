"""The compiled rule (`collector.systems.compile_rule`) answers exactly as `rules.evaluate`
for any tree, member list and member states; the rule cache follows member changes."""

from __future__ import annotations

from typing import Any, get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import parse_collector_config
from collector.rules import State, build_rule, evaluate
from collector.systems import RuleCache, compile_rule

AGENTS = ["app-01", "app-02", "db-01", "web-1"]
CHECKS = ["web", "tcp", "oracle"]
STATE_VALUES: tuple[State, ...] = get_args(State)

keys_st = st.lists(st.tuples(st.sampled_from(AGENTS), st.sampled_from(CHECKS)),
                   unique=True, max_size=8).map(sorted)
leaf_st = st.sampled_from(["app-*/web", "app-01/web", "db-01/oracle", "*/tcp", "web-?/*",
                           "none/none", "[ad]*/*"])


def tree(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    parts = st.lists(children, min_size=1, max_size=4)
    return st.one_of(parts.map(lambda p: {"all": p}), parts.map(lambda p: {"any": p}),
                     st.tuples(st.integers(1, 3), parts).map(
                         lambda t: {"at_least": t[0], "of": t[1]}))


rule_st = st.recursive(leaf_st, tree, max_leaves=8).filter(
    lambda r: not isinstance(r, dict) or _valid(r))


def _node(rule: Any) -> Any:
    return rule if isinstance(rule, str) else build_rule(rule, [])   # a lone glob is a leaf


def _valid(rule: Any) -> bool:
    try:
        _node(rule)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(rule=rule_st, keys=keys_st, data=st.data())
def test_compiled_rule_is_evaluate(rule: Any, keys: list[tuple[str, str]],
                                   data: st.DataObject) -> None:
    node = _node(rule)
    compiled = compile_rule(node, keys)
    for _ in range(5):
        combo = tuple(data.draw(st.sampled_from(STATE_VALUES)) for _ in keys)
        assert compiled(combo) == evaluate(node, dict(zip(keys, combo, strict=True)))


def test_rule_cache_recompiles_when_members_change() -> None:
    config = parse_collector_config({"systems": [
        {"id": "EMR", "name": "EMR", "members": ["app-*/web"], "rule": "all"}]})
    system = config.systems[0]
    cache = RuleCache()
    one = cache.rule(system, [("app-01", "web")])
    assert one(("down",)) == "down"
    assert cache.rule(system, [("app-01", "web")]) is one   # kept, with its answers
    two = cache.rule(system, [("app-01", "web"), ("app-02", "web")])
    assert two is not one
    assert two(("up", "down")) == "down" and two(("up", "up")) == "up"
