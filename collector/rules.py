"""How a business system's state follows from its checks: the rule tree and its evaluation.

A check's last status maps to a component state: ok → up, warning → degraded,
critical → down, unknown (or no fresh data) → unknown. A rule combines component states:

- `all`: down if any part is down; else unknown if any is unknown; else degraded if any is
  degraded; else up.
- `any` / `at_least: N` (of the parts): satisfied when N parts (1 for `any`) are up or
  degraded. Satisfied with every part up → up; satisfied while some part is down or degraded
  → degraded (a component failed, the business still runs: the contract's level 2);
  not satisfied but could be with the unknown parts → unknown; otherwise down.

Leaves are `AGENT_ID/CHECK_ID` globs. A glob stands for every check it matches, each one a
part of the group it is written in (`at_least: 1` of `emr-app-*/web` is one of the app
servers); a glob that matches none is one unknown part (a configured member that never
reported is not "up").
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    model_validator,
)

State = Literal["up", "degraded", "down", "unknown"]

STATUS_STATE: dict[str, State] = {
    "ok": "up", "warning": "degraded", "critical": "down", "unknown": "unknown"}


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AllOf(_Node):
    all: tuple[RuleNode, ...] = Field(min_length=1)


class AnyOf(_Node):
    any: tuple[RuleNode, ...] = Field(min_length=1)


class AtLeast(_Node):
    at_least: int = Field(ge=1)
    of: tuple[RuleNode, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _reachable(self) -> AtLeast:
        if self.at_least > len(self.of) and not any("*" in p or "?" in p or "[" in p
                                                    for p in self.of if isinstance(p, str)):
            raise ValueError(f"at_least {self.at_least} is more than the {len(self.of)} parts")
        return self


Member = Annotated[str, Field(pattern=r"^[^/\s]+/[^/\s]+$")]
"""`AGENT_ID/CHECK_ID`, shell-style globs allowed (`emr-app-*/emr-web`)."""



def _node_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "member"
    if isinstance(value, _Node):
        return type(value).__name__
    if isinstance(value, Mapping):
        for key, kind in (("all", "AllOf"), ("any", "AnyOf"), ("at_least", "AtLeast")):
            if key in value:
                return kind
    return None


RuleNode = Annotated[
    Union[  # noqa: UP007 (recursive alias)
        Annotated[Member, Tag("member")],
        Annotated[AllOf, Tag("AllOf")],
        Annotated[AnyOf, Tag("AnyOf")],
        Annotated[AtLeast, Tag("AtLeast")],
    ],
    Discriminator(_node_kind, custom_error_type="rule_node",
                  custom_error_message="must be AGENT/CHECK or a mapping with all, any or "
                                       "at_least"),
]

AllOf.model_rebuild()
AnyOf.model_rebuild()
AtLeast.model_rebuild()


def expand_rule(rule: Any, members: Sequence[Any]) -> Any:
    """The rule as written in config, in tree form for validation: `all`, `any` and
    `{at_least: N}` apply to `members`; a tree (`{all: [...]}` …) is taken as it is."""
    if rule in ("all", "any"):
        if not members:
            raise ValueError(f"rule {rule!r} needs members")
        return {rule: list(members)}
    if isinstance(rule, Mapping) and set(rule) == {"at_least"}:
        return {"at_least": rule["at_least"], "of": list(members)}
    if isinstance(rule, Mapping):
        return rule
    raise ValueError("rule must be all, any, {at_least: N} or a tree of all/any/at_least")


def build_rule(rule: Any, members: Sequence[str]) -> RuleNode:
    """`expand_rule`, validated."""
    return TypeAdapter(RuleNode).validate_python(expand_rule(rule, members))


def leaves(node: RuleNode) -> list[str]:
    if isinstance(node, str):
        return [node]
    parts = node.all if isinstance(node, AllOf) else node.any if isinstance(node, AnyOf) \
        else node.of
    return [leaf for part in parts for leaf in leaves(part)]


def matches(pattern: str, agent_id: str, check_id: str) -> bool:
    agent_pattern, _, check_pattern = pattern.partition("/")
    return fnmatch.fnmatchcase(agent_id, agent_pattern) and \
        fnmatch.fnmatchcase(check_id, check_pattern)


def evaluate(node: RuleNode, states: Mapping[tuple[str, str], State]) -> State:
    """The system state for component `states` keyed by (agent_id, check_id)."""
    if isinstance(node, str):
        return _all(_parts([node], states))
    if isinstance(node, AllOf):
        return _all(_parts(node.all, states))
    if isinstance(node, AnyOf):
        return _at_least(1, _parts(node.any, states))
    return _at_least(node.at_least, _parts(node.of, states))


def _parts(nodes: Sequence[RuleNode], states: Mapping[tuple[str, str], State]) -> list[State]:
    out: list[State] = []
    for node in nodes:
        if isinstance(node, str):
            found = [s for (a, c), s in states.items() if matches(node, a, c)]
            out.extend(found or ["unknown"])
        else:
            out.append(evaluate(node, states))
    return out


def _all(parts: Sequence[State]) -> State:
    for state in ("down", "unknown", "degraded"):
        if state in parts:
            return state
    return "up"


def _at_least(n: int, parts: Sequence[State]) -> State:
    working = sum(1 for s in parts if s in ("up", "degraded"))
    if working >= n:
        return "up" if all(s == "up" for s in parts) else "degraded"
    if working + parts.count("unknown") >= n:
        return "unknown"
    return "down"
