"""Security configuration policies: rules as data (YAML), evaluated read-only against a host.

This module owns the policy language, its strict loader and the evaluator. The language follows
Wazuh's Security Configuration Assessment (SCA) semantics — a check passes or fails by its
`condition` (all / any / none) over `rules`, a rule looks at a file, a directory, a command's
output, the process list, the listening ports or the Windows registry — written as YAML
mappings instead of SCA's `f:/path -> r:regex` strings, so that a mistake is a load error that
names the file and the path:
https://documentation.wazuh.com/current/user-manual/capabilities/sec-config-assessment/creating-custom-policies.html

Everything goes through `HostAccess` (probes/access.py), so the same policies run on the agent's
own host and agentlessly over SSH: files are found with `find` and read with `read_file`,
processes come from `ps`, ports from `ss`, registry values from PowerShell; commands are argv
lists, never a shell string. The grammar, the shipped policies and how to write one are in
docs/probes/hardening.md.

A check's result is `passed`, `failed`, `not_applicable` (what it looks at is absent: the file,
the command) or `error` (we could not evaluate it: a file we may not read, a command that timed
out). Evidence names the file and line (or the command and its output line); values on lines
that name a password, secret or credential are masked before they leave this module.
"""

from __future__ import annotations

import enum
import importlib.resources
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from probes.access import CommandOutput, HostAccess
from probes.config import ConfigError, Duration, Regex, StrictModel, validation_messages

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low")
"""Most severe first."""

VarValue = str | list[str]

DOCS = "docs/probes/hardening.md"
_ID = r"^[a-z][a-z0-9_]*$"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_GLOB_CHARS = re.compile(r"[*?\[]")
_FILE_MAX_BYTES = 4 << 20
_LIST_LIMIT_S = 20.0
_EVIDENCE_LIMIT = 600


class Result(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"


# --- the language -------------------------------------------------------------------------


def _clause(value: str) -> str:
    # A GB/T 22239-2019 clause id (chapter 8 = level 3) followed by its short description.
    if not re.match(r"^8\.[1-5]\.\d+\.\d+ [a-z]\)\s*\S", value):
        raise ValueError(f"{value!r} must start with a GB/T 22239-2019 level-3 clause id and "
                         "carry its description, e.g. '8.1.4.1 a) 身份标识和鉴别…'")
    return value


def _has_group(value: str) -> str:
    if re.compile(value).groups < 1:
        raise ValueError("the regex must capture the number to compare in a group: (\\d+)")
    return value


def _argv(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError("must be an argv list such as [sshd, -T]: commands never run "
                         "through a shell")
    return value


def _ports(value: Any) -> Any:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


class Compare(StrictModel):
    """`regex` captures a number in its first group; the rule holds when at least one line
    matches and every matching line's number satisfies `op value`."""

    regex: Regex
    op: Literal["<", "<=", "==", "!=", ">=", ">"]
    value: float

    @field_validator("regex")
    @classmethod
    def _group(cls, value: str) -> str:
        return _has_group(value)

    def holds(self, number: float) -> bool:
        return {"<": number < self.value, "<=": number <= self.value,
                "==": number == self.value, "!=": number != self.value,
                ">=": number >= self.value, ">": number > self.value}[self.op]

    def text(self) -> str:
        return f"{self.op} {self.value:g}"


class _RuleBase(StrictModel):
    contains: Regex | None = None
    """Holds when some line matches (re.search)."""
    not_contains: Regex | None = None
    """Holds when no line matches (the files or output are there)."""
    compare: Compare | None = None
    fallback: Rule | None = None
    """Evaluated instead when this rule is not applicable or cannot be evaluated (e.g. `sshd
    -T` not runnable here: read the config file instead)."""

    def tests(self) -> list[str]:
        return [name for name in ("contains", "not_contains", "compare")
                if getattr(self, name) is not None]

    def templates(self) -> list[str]:
        """Strings in which `${var}` is expanded."""
        return []

    def children(self) -> list[Rule]:
        return [self.fallback] if self.fallback is not None else []

    @model_validator(mode="after")
    def _one_test(self) -> _RuleBase:
        tests = self.tests() + (["exists"] if getattr(self, "exists", None) is not None else [])
        tests += ["exit_code"] if getattr(self, "exit_code", None) is not None else []
        if len(tests) > 1:
            raise ValueError(f"give one test per rule, not {' and '.join(tests)}")
        return self


class FileRule(_RuleBase):
    """Files (a path, a list, `${var}`s; `*` allowed in the last path component). With no
    test: holds when one exists (any type). `exists: false`: holds when none exists. With
    `contains` / `not_contains` / `compare`: tests the lines of every existing regular file,
    not applicable when there is none."""

    file: Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)] \
        = Field(min_length=1)
    exists: bool | None = None
    syntax: Literal["plain", "xml"] = "plain"
    """`xml`: comments are blanked and each tag is joined onto the line it starts on, so
    `<Server port=…` spread over lines matches as one (line numbers stay true)."""

    def templates(self) -> list[str]:
        return list(self.file)


class DirectoryRule(_RuleBase):
    """A directory: `exists` (default true with no test), or the tests over the regular files
    in it whose name matches `files` (a shell pattern; `recursive` to descend)."""

    directory: str
    files: str = "*"
    recursive: bool = False
    exists: bool | None = None
    syntax: Literal["plain", "xml"] = "plain"

    def templates(self) -> list[str]:
        return [self.directory]


class CommandRule(_RuleBase):
    """A command (argv list; `${var}` expands inside elements, a list var alone splices).
    With no test: holds when it exits 0. `exit_code: N`: holds when it exits N. The line
    tests need exit 0 (anything else is an evaluation error). Not applicable when the program
    is not installed."""

    command: Annotated[list[str], BeforeValidator(_argv)] = Field(min_length=1)
    privileged: bool = False
    """Run through `sudo -n` (the sudoers whitelist decides; never a password prompt)."""
    timeout: Duration = 15.0
    exit_code: int | None = None

    def templates(self) -> list[str]:
        return list(self.command)


class ProcessRule(_RuleBase):
    """Holds when a running process's name or command line matches the regex (`ps`)."""

    process: Regex

    @model_validator(mode="after")
    def _no_tests(self) -> ProcessRule:
        if self.tests():
            raise ValueError("a process rule takes no contains/not_contains/compare")
        return self


class ListeningRule(_RuleBase):
    """Holds when any of the TCP ports listens on any address (`ss -ltn`)."""

    listening: Annotated[list[Annotated[int, Field(ge=1, le=65535)]],
                         BeforeValidator(_ports)] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_tests(self) -> ListeningRule:
        if self.tests():
            raise ValueError("a listening rule takes no contains/not_contains/compare")
        return self


_HIVES = {"HKLM": "HKEY_LOCAL_MACHINE", "HKCU": "HKEY_CURRENT_USER", "HKU": "HKEY_USERS",
          "HKCR": "HKEY_CLASSES_ROOT", "HKCC": "HKEY_CURRENT_CONFIG"}


class RegistryRule(_RuleBase):
    """A Windows registry key (`HKLM\\SOFTWARE\\…`, read with PowerShell's
    Get-ItemProperty). With no `value`: holds when the key exists. With `value`: `exists`
    or the tests on that value's data (a number for `compare`). Not applicable when the key
    is absent."""

    registry: str
    value: str | None = None
    exists: bool | None = None

    @field_validator("registry")
    @classmethod
    def _hive(cls, key: str) -> str:
        hive = re.split(r"[:\\]", key, maxsplit=1)[0].upper()
        if hive not in _HIVES and hive not in _HIVES.values():
            raise ValueError(f"{key!r} must start with a hive: {', '.join(_HIVES)}")
        return key

    def templates(self) -> list[str]:
        return [self.registry]

    def provider_path(self, key: str) -> str:
        hive, _, rest = key.partition("\\")
        hive = hive.rstrip(":").upper()
        return f"Registry::{_HIVES.get(hive, hive)}\\{rest}"


class GroupRule(_RuleBase):
    """A nested condition: `all: [rules]`, `any: [rules]` or `none: [rules]` holds as a
    check with that condition would pass (e.g. `weekly` and `rotate >= 26`)."""

    all: list[Rule] | None = None
    any: list[Rule] | None = None
    none: list[Rule] | None = None

    @model_validator(mode="after")
    def _one_group(self) -> GroupRule:
        given = [n for n in ("all", "any", "none") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("a group rule has exactly one of all:, any:, none:")
        if not getattr(self, given[0]):
            raise ValueError(f"{given[0]}: needs at least one rule")
        if self.tests():
            raise ValueError("a group rule takes no contains/not_contains/compare")
        return self

    @property
    def condition(self) -> Literal["all", "any", "none"]:
        return "all" if self.all is not None else "any" if self.any is not None else "none"

    @property
    def members(self) -> list[Rule]:
        return self.all or self.any or self.none or []

    def children(self) -> list[Rule]:
        return [*self.members, *super().children()]


_RULE_KEYS = {"file": "FileRule", "directory": "DirectoryRule", "command": "CommandRule",
              "process": "ProcessRule", "listening": "ListeningRule",
              "registry": "RegistryRule", "all": "GroupRule", "any": "GroupRule",
              "none": "GroupRule"}


def _rule_tag(data: Any) -> str | None:
    if isinstance(data, BaseModel):
        return type(data).__name__
    if isinstance(data, dict):
        for key, tag in _RULE_KEYS.items():
            if key in data:
                return tag
    return None


# Tags are class names: validation_messages() drops capitalised parts of an error's path, so
# errors read `checks[2].rules[0].contains`, as the YAML is written.
Rule = Annotated[
    Annotated[FileRule, Tag("FileRule")] | Annotated[DirectoryRule, Tag("DirectoryRule")]
    | Annotated[CommandRule, Tag("CommandRule")] | Annotated[ProcessRule, Tag("ProcessRule")]
    | Annotated[ListeningRule, Tag("ListeningRule")]
    | Annotated[RegistryRule, Tag("RegistryRule")] | Annotated[GroupRule, Tag("GroupRule")],
    Discriminator(_rule_tag, custom_error_type="rule_type",
                  custom_error_message="a rule needs one of: " + ", ".join(_RULE_KEYS)),
]

for _model in (FileRule, DirectoryRule, CommandRule, ProcessRule, ListeningRule, RegistryRule,
               GroupRule):
    _model.model_rebuild()


class Check(StrictModel):
    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1)
    severity: Severity
    rationale: str = ""
    remediation: str = Field(min_length=1)
    dengbao: list[Annotated[str, BeforeValidator(_clause)]] = Field(min_length=1)
    """GB/T 22239-2019 clauses this check gives evidence for: `8.1.4.1 a) …`."""
    references: list[str] = Field(default_factory=list)
    condition: Literal["all", "any", "none"] = "all"
    rules: list[Rule] = Field(min_length=1)
    applies_when: list[Rule] = Field(default_factory=list)
    """Not applicable unless one of these holds (e.g. TLS is configured at all)."""


class PolicyInfo(StrictModel):
    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    description: str = ""
    references: list[str] = Field(default_factory=list)
    applies_when: list[Rule] = Field(default_factory=list)
    """The policy applies when any of these rules holds (none given: always)."""


class Policy(StrictModel):
    policy: PolicyInfo
    vars: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], VarValue] = Field(
        default_factory=dict)
    checks: list[Check] = Field(min_length=1)

    @property
    def id(self) -> str:
        return self.policy.id

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        seen: set[str] = set()
        for check in self.checks:
            if check.id in seen:
                raise ValueError(f"check id {check.id!r} is used twice")
            seen.add(check.id)
        self.bind({})
        return self

    def all_rules(self) -> list[Rule]:
        rules: list[Rule] = []
        pending: list[Rule] = [*self.policy.applies_when,
                               *(r for c in self.checks for r in (*c.applies_when, *c.rules))]
        while pending:
            rule = pending.pop()
            rules.append(rule)
            pending.extend(rule.children())
        return rules

    def bind(self, overrides: Mapping[str, VarValue]) -> dict[str, VarValue]:
        """The policy's vars with `overrides` applied, after checking that every `${var}`
        expands and that every file and directory path comes out absolute (ValueError)."""
        unknown = sorted(set(overrides) - set(self.vars))
        if unknown:
            raise ValueError(f"policy {self.id}: unknown var(s) {', '.join(unknown)}; "
                             f"it has: {', '.join(sorted(self.vars)) or 'none'}")
        bound = {**self.vars, **overrides}
        for rule in self.all_rules():
            for template in rule.templates():
                for path in expand(template, bound):
                    if isinstance(rule, FileRule | DirectoryRule):
                        _check_path(path)
        return bound


def _check_path(path: str) -> None:
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must be absolute")
    if _GLOB_CHARS.search(path.rpartition("/")[0]):
        raise ValueError(f"path {path!r}: a pattern (* ? [) may only stand in the last "
                         "path component")


def expand(template: str, bound: Mapping[str, VarValue]) -> list[str]:
    """`${name}` replaced by the var's value. A list var standing alone expands to its items;
    inside a longer string only a one-item list may stand (ValueError otherwise)."""
    whole = _VAR.fullmatch(template)
    if whole:
        value = _lookup(whole.group(1), bound)
        return list(value) if isinstance(value, list) else [value]

    def one(match: re.Match[str]) -> str:
        value = _lookup(match.group(1), bound)
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError(f"var {match.group(1)!r} is a list: it may only stand alone "
                                 f"in {template!r}")
            return value[0]
        return value

    return [_VAR.sub(one, template)]


def _lookup(name: str, bound: Mapping[str, VarValue]) -> VarValue:
    try:
        return bound[name]
    except KeyError:
        raise ValueError(f"var ${{{name}}} is not defined under vars:") from None


# --- loading ------------------------------------------------------------------------------


def load_policy_text(text: str, source: str) -> Policy:
    """A policy from YAML text; ConfigError naming `source` and the path of each problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(YAML)"
        raise ConfigError(source, [f"{where}: {getattr(exc, 'problem', None) or exc}"]) \
            from None
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): must be a mapping with policy:, vars:, "
                                   "checks:"])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, validation_messages(exc)) from None


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    return load_policy_text(text, str(path))


def shipped_policies() -> list[str]:
    """Ids of the policies in probes/policies/."""
    folder = importlib.resources.files("probes.policies")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.name.endswith(".yaml"))


def shipped_policy(policy_id: str) -> Policy:
    if policy_id not in shipped_policies():
        raise ValueError(f"no shipped policy {policy_id!r}; shipped: "
                         f"{', '.join(shipped_policies())}")
    resource = importlib.resources.files("probes.policies") / f"{policy_id}.yaml"
    return load_policy_text(resource.read_text(encoding="utf-8"),
                            f"probes/policies/{policy_id}.yaml")


# --- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result on one host, with what it is for and how to fix it."""

    policy: str
    id: str
    title: str
    severity: Severity
    result: Result
    evidence: str
    remediation: str
    dengbao: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.policy}.{self.id}"

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "id": self.id, "title": self.title,
                "severity": self.severity, "result": str(self.result),
                "evidence": self.evidence, "remediation": self.remediation,
                "dengbao": list(self.dengbao)}


class _State(enum.Enum):
    TRUE = "true"
    FALSE = "false"
    NA = "not applicable"
    ERROR = "error"


@dataclass(frozen=True)
class _Outcome:
    state: _State
    evidence: str


class _RuleError(Exception):
    """The rule cannot be evaluated (our side); the text says why."""


async def evaluate(policy: Policy, access: HostAccess,
                   overrides: Mapping[str, VarValue] | None = None) -> list[CheckOutcome]:
    """Every check of `policy` on the host behind `access`, in file order. Files, command
    outputs and listings are fetched once per call however many checks look at them."""
    bound = policy.bind(overrides or {})
    host = _Host(access)
    gate = await _gate(policy.policy.applies_when, host, bound)
    outcomes = []
    for check in policy.checks:
        if gate is not None:
            decided = _Outcome(gate.state, f"policy {policy.id} does not apply here: "
                                           f"{gate.evidence}")
        else:
            decided = await _gate(check.applies_when, host, bound) or _combine(
                check.condition, [await _rule(r, host, bound) for r in check.rules])
        result = {_State.TRUE: Result.PASSED, _State.FALSE: Result.FAILED,
                  _State.NA: Result.NOT_APPLICABLE, _State.ERROR: Result.ERROR}[decided.state]
        outcomes.append(CheckOutcome(
            policy=policy.id, id=check.id, title=check.title, severity=check.severity,
            result=result, evidence=_cut(decided.evidence, _EVIDENCE_LIMIT),
            remediation=check.remediation, dengbao=tuple(check.dengbao)))
    return outcomes


async def _gate(rules: list[Rule], host: _Host, bound: Mapping[str, VarValue]
                ) -> _Outcome | None:
    """None when `applies_when` lets the checks run (it is empty or one rule holds), else
    the not-applicable (or error) outcome to give them."""
    if not rules:
        return None
    outcome = _combine("any", [await _rule(r, host, bound) for r in rules])
    if outcome.state is _State.TRUE:
        return None
    state = _State.ERROR if outcome.state is _State.ERROR else _State.NA
    return _Outcome(state, outcome.evidence)


def _combine(condition: str, outcomes: list[_Outcome]) -> _Outcome:
    """Wazuh SCA's conditions over rule outcomes. A rule that is not applicable (its file or
    program is absent) does not count; the check is not applicable only when none of its
    rules is. A rule that decides the check decides it even when another could not be
    evaluated; otherwise an evaluation error makes the check an error."""
    def joined(state: _State) -> str:
        return "; ".join(o.evidence for o in outcomes if o.state is state)

    states = {o.state for o in outcomes}
    decisive = _State.FALSE if condition == "all" else _State.TRUE
    if decisive in states:
        return _Outcome(_State.TRUE if condition == "any" else _State.FALSE, joined(decisive))
    if _State.ERROR in states:
        return _Outcome(_State.ERROR, joined(_State.ERROR))
    counted = [o for o in outcomes if o.state is not _State.NA]
    if not counted:
        return _Outcome(_State.NA, joined(_State.NA))
    verdict = _State.FALSE if condition == "any" else _State.TRUE
    return _Outcome(verdict, "; ".join(o.evidence for o in counted))


async def _rule(rule: Rule, host: _Host, bound: Mapping[str, VarValue]) -> _Outcome:
    try:
        if isinstance(rule, FileRule):
            outcome = await _file_rule(rule, host, bound)
        elif isinstance(rule, DirectoryRule):
            outcome = await _directory_rule(rule, host, bound)
        elif isinstance(rule, CommandRule):
            outcome = await _command_rule(rule, host, bound)
        elif isinstance(rule, ProcessRule):
            outcome = await _process_rule(rule, host)
        elif isinstance(rule, ListeningRule):
            outcome = await _listening_rule(rule, host)
        elif isinstance(rule, GroupRule):
            outcome = _combine(rule.condition,
                               [await _rule(r, host, bound) for r in rule.members])
        else:
            outcome = await _registry_rule(rule, host, bound)
    except (_RuleError, ValueError) as exc:
        outcome = _Outcome(_State.ERROR, str(exc))
    if outcome.state in (_State.NA, _State.ERROR) and rule.fallback is not None:
        instead = await _rule(rule.fallback, host, bound)
        return _Outcome(instead.state, f"{outcome.evidence}; instead: {instead.evidence}")
    return outcome


def _expand_all(templates: Sequence[str], bound: Mapping[str, VarValue]) -> list[str]:
    return [item for template in templates for item in expand(template, bound)]


async def _file_rule(rule: FileRule, host: _Host, bound: Mapping[str, VarValue]) -> _Outcome:
    paths = _expand_all(rule.file, bound)
    for path in paths:
        _check_path(path)
    found: list[tuple[str, str]] = []
    for path in paths:
        found += await host.glob(path) if _GLOB_CHARS.search(path) else await host.stat(path)
    where = ", ".join(paths)
    if not rule.tests():
        wanted = rule.exists is not False
        if found:
            text = ", ".join(p for _, p in found[:3]) + (" exists" if len(found) == 1
                                                           else " exist")
        else:
            text = f"{where}: absent"
        return _Outcome(_State.TRUE if bool(found) == wanted else _State.FALSE, text)
    files = [p for kind, p in found if kind == "f"]
    if not files:
        return _Outcome(_State.NA, f"{where}: no such file")
    lines = [line for path in files for line in await host.lines(path, rule.syntax)]
    return _test_lines(rule, lines, ", ".join(files))


async def _directory_rule(rule: DirectoryRule, host: _Host, bound: Mapping[str, VarValue]
                          ) -> _Outcome:
    paths = expand(rule.directory, bound)
    if len(paths) != 1:
        raise _RuleError(f"directory {rule.directory!r} must name one directory")
    directory = paths[0]
    _check_path(directory)
    found = await host.stat(directory)
    is_dir = bool(found) and found[0][0] == "d"
    if not rule.tests():
        wanted = rule.exists is not False
        text = f"directory {directory} " + ("exists" if is_dir else "is absent")
        return _Outcome(_State.TRUE if is_dir == wanted else _State.FALSE, text)
    if not is_dir:
        return _Outcome(_State.NA, f"directory {directory} is absent")
    files = await host.find_files(directory, rule.files, rule.recursive)
    where = f"{directory}/{'**/' if rule.recursive else ''}{rule.files}"
    if not files:
        return _Outcome(_State.NA, f"no file matches {where}")
    lines = [line for path in files for line in await host.lines(path, rule.syntax)]
    return _test_lines(rule, lines, where)


@dataclass(frozen=True)
class _Line:
    source: str
    """`path:line` for files, the command for output lines."""
    text: str


def _test_lines(rule: _RuleBase, lines: list[_Line], where: str) -> _Outcome:
    if rule.contains is not None:
        hit = next((ln for ln in lines if re.search(rule.contains, ln.text)), None)
        if hit is not None:
            return _Outcome(_State.TRUE, _show(hit))
        return _Outcome(_State.FALSE, f"no line matches /{rule.contains}/ in {where}")
    if rule.not_contains is not None:
        hit = next((ln for ln in lines if re.search(rule.not_contains, ln.text)), None)
        if hit is not None:
            return _Outcome(_State.FALSE, _show(hit))
        return _Outcome(_State.TRUE, f"no line matches /{rule.not_contains}/ in {where}")
    compare = rule.compare
    assert compare is not None
    matched: list[tuple[_Line, float]] = []
    for ln in lines:
        match = re.search(compare.regex, ln.text)
        if match is None:
            continue
        try:
            matched.append((ln, float(match.group(1))))
        except (TypeError, ValueError):
            raise _RuleError(f"{_show(ln)}: {match.group(1)!r} is not a number") from None
    if not matched:
        return _Outcome(_State.FALSE, f"no line matches /{compare.regex}/ in {where}")
    for ln, number in matched:
        if not compare.holds(number):
            return _Outcome(_State.FALSE,
                            f"{_show(ln)} ({number:g}, expected {compare.text()})")
    ln, number = matched[0]
    return _Outcome(_State.TRUE, f"{_show(ln)} ({number:g} {compare.text()})")


def _show(line: _Line) -> str:
    return f"{line.source}: {_cut(mask_secrets(line.text.strip()), 200)}"


async def _command_rule(rule: CommandRule, host: _Host, bound: Mapping[str, VarValue]
                        ) -> _Outcome:
    argv = _expand_all(rule.command, bound)
    shown = _cut(shlex.join(argv), 120)
    out = await host.run(argv, privileged=rule.privileged, limit_s=rule.timeout)
    if _not_installed(out):
        return _Outcome(_State.NA, f"`{shown}`: {argv[0]} is not installed here")
    if out.timed_out or out.error is not None or out.exit_code is None:
        raise _RuleError(f"`{shown}`: {out.error or 'did not finish'}")
    if rule.exit_code is not None or not rule.tests():
        wanted = 0 if rule.exit_code is None else rule.exit_code
        return _Outcome(_State.TRUE if out.exit_code == wanted else _State.FALSE,
                        f"`{shown}` exited {out.exit_code}")
    if out.exit_code != 0:
        first = out.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        raise _RuleError(f"`{shown}` exited {out.exit_code}"
                         + (f": {_cut(mask_secrets(first[0]), 200)}" if first else ""))
    lines = [_Line(f"`{shown}`", text) for text in out.text().splitlines()]
    return _test_lines(rule, lines, f"the output of `{shown}`")


def _not_installed(out: CommandOutput) -> bool:
    # LocalAccess: exec fails with ENOENT; over SSH the remote shell answers 127.
    return out.exit_code == 127 or (
        out.exit_code is None and not out.timed_out and out.error is not None
        and "No such file" in out.error)


async def _process_rule(rule: ProcessRule, host: _Host) -> _Outcome:
    for pid, comm, args in await host.processes():
        if re.search(rule.process, comm) or re.search(rule.process, args):
            return _Outcome(_State.TRUE, f"process {pid} runs: {_cut(mask_secrets(args), 160)}")
    return _Outcome(_State.FALSE, f"no running process matches /{rule.process}/")


async def _listening_rule(rule: ListeningRule, host: _Host) -> _Outcome:
    listening = await host.listening()
    hits = [address for address, port in listening if port in rule.listening]
    if hits:
        return _Outcome(_State.TRUE, "listening on " + ", ".join(hits[:5]))
    ports = ", ".join(str(p) for p in rule.listening)
    return _Outcome(_State.FALSE, f"nothing listens on TCP port(s) {ports}")


async def _registry_rule(rule: RegistryRule, host: _Host, bound: Mapping[str, VarValue]
                         ) -> _Outcome:
    keys = expand(rule.registry, bound)
    if len(keys) != 1:
        raise _RuleError(f"registry {rule.registry!r} must name one key")
    key = keys[0]
    # A PowerShell single-quoted string: '' is the only escape, nothing inside is evaluated.
    literal = rule.provider_path(key).replace("'", "''")
    script = (f"Get-ItemProperty -LiteralPath '{literal}' -ErrorAction Stop "
              "| ConvertTo-Json -Compress -Depth 3")
    out = await host.run(["powershell.exe", "-NoProfile", "-NonInteractive", "-Command",
                          script], privileged=False, limit_s=30.0)
    if _not_installed(out):
        return _Outcome(_State.NA, "powershell.exe is not available here (not Windows)")
    if out.timed_out or out.exit_code is None:
        raise _RuleError(f"registry {key}: {out.error or 'did not finish'}")
    if out.exit_code != 0:
        error = out.stderr.decode("utf-8", "replace")
        if "does not exist" in error or "Cannot find path" in error:
            return _Outcome(_State.NA, f"registry key {key} is absent")
        raise _RuleError(f"registry {key}: PowerShell exited {out.exit_code}: "
                         f"{_cut(error.strip(), 200)}")
    values = parse_registry_output(out.text())
    if rule.value is None:
        wanted = rule.exists is not False
        return _Outcome(_State.TRUE if wanted else _State.FALSE, f"registry key {key} exists")
    name = f"{key}\\{rule.value}"
    if rule.value not in values:
        if rule.exists is False:
            return _Outcome(_State.TRUE, f"{name} is not set")
        return _Outcome(_State.FALSE, f"{name} is not set")
    data = values[rule.value]
    if not rule.tests():
        return _Outcome(_State.TRUE if rule.exists is not False else _State.FALSE,
                        f"{name} = {mask_secrets(data)}")
    if rule.compare is not None and not re.fullmatch(r"-?\d+(\.\d+)?", data):
        raise _RuleError(f"{name} = {data!r} is not a number")
    return _test_lines(rule, [_Line(name, data)], name)


def parse_registry_output(text: str) -> dict[str, str]:
    """`Get-ItemProperty … | ConvertTo-Json` output -> value name -> data as text
    (REG_MULTI_SZ lines joined by newlines; PowerShell's own PS* properties dropped)."""
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise _RuleError(f"PowerShell output is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _RuleError("PowerShell output is not one JSON object")
    values = {}
    for name, value in data.items():
        if name.startswith("PS") and name in {"PSPath", "PSParentPath", "PSChildName",
                                              "PSDrive", "PSProvider"}:
            continue
        if isinstance(value, list):
            values[name] = "\n".join(str(v) for v in value)
        elif isinstance(value, bool):
            values[name] = str(int(value))
        else:
            values[name] = "" if value is None else str(value)
    return values


# --- what the evaluator reads, fetched once per evaluation ---------------------------------


@dataclass
class _Host:
    access: HostAccess
    _stat: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    _lines: dict[tuple[str, str], list[_Line]] = field(default_factory=dict)
    _runs: dict[tuple[tuple[str, ...], bool], CommandOutput] = field(default_factory=dict)
    _ps: list[tuple[str, str, str]] | None = None
    _ss: list[tuple[str, int]] | None = None

    async def run(self, argv: list[str], *, privileged: bool, limit_s: float
                  ) -> CommandOutput:
        key = (tuple(argv), privileged)
        if key not in self._runs:
            self._runs[key] = await self.access.run(argv, limit_s=limit_s,
                                                    privileged=privileged)
        return self._runs[key]

    async def stat(self, path: str) -> list[tuple[str, str]]:
        """[(type, path)] for an existing path (find's %y: f, d, l for a dangling link…),
        [] when absent."""
        if path not in self._stat:
            self._stat[path] = await self._find(
                [path, "-maxdepth", "0", "-printf", r"%y\t%p\n"], path)
        return self._stat[path]

    async def glob(self, pattern: str) -> list[tuple[str, str]]:
        if pattern not in self._stat:
            directory, _, name = pattern.rpartition("/")
            self._stat[pattern] = sorted(await self._find(
                [directory or "/", "-mindepth", "1", "-maxdepth", "1", "-name", name,
                 "-printf", r"%y\t%p\n"], directory or "/"), key=lambda t: t[1])
        return self._stat[pattern]

    async def find_files(self, directory: str, pattern: str, recursive: bool) -> list[str]:
        depth = [] if recursive else ["-maxdepth", "1"]
        found = await self._find([directory, "-mindepth", "1", *depth, "-type", "f",
                                  "-name", pattern, "-printf", r"f\t%p\n"], directory)
        return sorted(p for _, p in found)

    async def _find(self, args: list[str], top: str) -> list[tuple[str, str]]:
        # -L: follow symlinks (sites-enabled/* are links); paths are absolute, so none of
        # them can be read by find as an option or an expression.
        out = await self.access.run(["find", "-L", *args], limit_s=_LIST_LIMIT_S)
        if out.error is not None or out.timed_out:
            raise _RuleError(f"cannot list {top}: {out.error or 'find timed out'}")
        problems = [ln for ln in out.stderr.decode("utf-8", "replace").splitlines()
                    if ln.strip() and "No such file or directory" not in ln]
        if problems:
            raise _RuleError(f"cannot list {top}: {_cut(problems[0], 200)}")
        found = []
        for line in out.text().splitlines():
            kind, sep, path = line.partition("\t")
            if sep:
                found.append((kind, path))
        return found

    async def lines(self, path: str, syntax: str) -> list[_Line]:
        if (path, syntax) not in self._lines:
            data = await self.access.read_file(path, max_bytes=_FILE_MAX_BYTES)
            if data is None:
                raise _RuleError(f"{path} exists but cannot be read by the agent")
            text = data.decode("utf-8", errors="replace")
            if syntax == "xml":
                text = xml_lines(text)
            self._lines[path, syntax] = [_Line(f"{path}:{n}", t)
                                         for n, t in enumerate(text.splitlines(), start=1)]
        return self._lines[path, syntax]

    async def processes(self) -> list[tuple[str, str, str]]:
        if self._ps is None:
            out = await self.access.run(["ps", "-eo", "pid=,comm=,args="], limit_s=_LIST_LIMIT_S)
            if not out.ok:
                raise _RuleError(f"cannot list processes: {out.error or out.exit_code}")
            self._ps = parse_ps(out.text())
        return self._ps

    async def listening(self) -> list[tuple[str, int]]:
        if self._ss is None:
            out = await self.access.run(["ss", "-ltn"], limit_s=_LIST_LIMIT_S)
            if not out.ok:
                raise _RuleError(f"cannot list listening ports: {out.error or out.exit_code}")
            self._ss = parse_ss(out.text())
        return self._ss


def xml_lines(text: str) -> str:
    """XML text for line tests: comments blanked, each tag joined onto the line it starts on
    (the line breaks it held follow it, so every later line keeps its number)."""
    def blank(match: re.Match[str]) -> str:
        return "\n" * match.group().count("\n")

    def join(match: re.Match[str]) -> str:
        tag = match.group()
        breaks = tag.count("\n")
        return re.sub(r"\s*\n\s*", " ", tag) + "\n" * breaks if breaks else tag

    text = re.sub(r"<!--.*?-->", blank, text, flags=re.DOTALL)
    return re.sub(r"<[^<>]*>", join, text)


def parse_ps(text: str) -> list[tuple[str, str, str]]:
    """`ps -eo pid=,comm=,args=` -> [(pid, comm, args)]."""
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0].isdigit():
            rows.append((parts[0], parts[1], parts[2] if len(parts) > 2 else parts[1]))
    return rows


def parse_ss(text: str) -> list[tuple[str, int]]:
    """`ss -ltn` -> [(local address:port, port)]. The header is skipped by hand rather than
    with `-H`, which the iproute2 of CentOS 7 does not know."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] == "State":
            continue
        _, sep, port = parts[3].rpartition(":")
        if sep and port.isdigit():
            rows.append((parts[3], int(port)))
    return rows


# --- masking ------------------------------------------------------------------------------

_SECRET_WORD = re.compile(r"(?i)password|passwd|secret|credential")
_KEY_VALUE = re.compile(
    r"""(?ix)
    ([\w.-]*(?:password|passwd|secret|credential)s?[\w.-]*\s*[=:>]\s*)  # key= key: <key>
    ("[^"]*"|'[^']*'|[^\s"'<;,]+)""")
_KEY_SPACE_VALUE = re.compile(
    r"(?i)^(\s*[\w.-]*(?:password|passwd|secret|credentials?)\s+)(\S+)\s*$")


def mask_secrets(text: str) -> str:
    """`text` with the values next to password/secret/credential keys replaced by ***:
    `password="x"` -> `password="***"`, `<node-manager-password-encrypted>{AES}…<` ->
    `…>***<`, `db_password: x`, `ldap_secret x`. Settings that merely name the word
    (`PasswordAuthentication no`, `CredentialHandler`) keep their value."""
    if not _SECRET_WORD.search(text):
        return text

    def hide(match: re.Match[str]) -> str:
        value = match.group(2)
        quote = value[0] if value[:1] in {'"', "'"} else ""
        return f"{match.group(1)}{quote}***{quote}"

    text = _KEY_SPACE_VALUE.sub(lambda m: f"{m.group(1)}***", text)
    return _KEY_VALUE.sub(hide, text)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
