"""command probe running real plugin scripts written into tmp_path (sh and Python)."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.runner import run_check
from probes.command import CommandCheck, Perfdata, parse_output, parse_perfdata, probe
from probes.result import ProbeResult, Status


def plugin(tmp_path: Path, body: str, name: str = "check_test", *,
           interpreter: str = "/bin/sh") -> Path:
    path = tmp_path / name
    path.write_text(f"#!{interpreter}\n{body}")
    path.chmod(0o755)
    return path


def command(cmd: object, **kw: object) -> CommandCheck:
    return CommandCheck.model_validate({"id": "c", "kind": "command", "command": cmd, **kw})


def perfdata_metrics(res: ProbeResult) -> dict[str, tuple[float, str]]:
    return {m.labels["label"]: (m.value, m.labels["uom"])
            for m in res.metrics if m.name == "command_perfdata"}


def exit_code(res: ProbeResult) -> float:
    [value] = [m.value for m in res.metrics if m.name == "command_exit_code"]
    return value


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def wait_gone(pid: int, within: float = 3.0) -> bool:
    """SIGKILL is delivered asynchronously: poll until the process has ended."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- exit codes -------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status", "reason"), [
    (0, Status.OK, "ok"),
    (1, Status.WARNING, "plugin_warning"),
    (2, Status.CRITICAL, "plugin_critical"),
    (3, Status.UNKNOWN, "plugin_unknown"),
])
async def test_exit_code_is_the_status(tmp_path: Path, code: int, status: Status,
                                       reason: str) -> None:
    script = plugin(tmp_path, f"echo 'LOAD {status.value.upper()} - load 0.5 | load1=0.5;4;8;0'\n"
                              f"exit {code}\n")
    res = await probe(command([str(script)]))
    assert (res.status, res.reason) == (status, reason)
    assert res.summary == f"LOAD {status.value.upper()} - load 0.5"
    assert exit_code(res) == code
    assert perfdata_metrics(res) == {"load1": (0.5, "")}
    assert res.details["exit_code"] == code


async def test_exit_code_outside_the_plugin_range_is_unknown(tmp_path: Path) -> None:
    script = plugin(tmp_path, "echo 'something odd'\nexit 4\n")
    res = await probe(command([str(script)]))
    assert (res.status, res.reason) == (Status.UNKNOWN, "plugin_unknown")
    assert res.summary == "exit code 4 is not a plugin status: something odd"


async def test_death_by_signal_is_killed(tmp_path: Path) -> None:
    script = plugin(tmp_path, "echo 'about to crash'\nkill -SEGV $$\n")
    res = await probe(command([str(script)]))
    assert (res.status, res.reason) == (Status.UNKNOWN, "killed")
    assert res.summary == "check_test was killed by SIGSEGV"
    assert res.details["signal"] == "SIGSEGV"
    assert exit_code(res) == 128 + 11


async def test_no_output(tmp_path: Path) -> None:
    res = await probe(command([str(plugin(tmp_path, "exit 0\n"))]))
    assert (res.status, res.summary) == (Status.OK, "check_test printed nothing")


# --- output and perfdata ----------------------------------------------------------------


DISK_OUTPUT = """\
DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968
/ 15272 MB (77%);
/boot 68 MB (69%);
/var/log 819 MB (84%); | /boot=68MB;88;93;0;98
'/var log'=818MB;970;975;0;980 'it''s'=U;; time=12ms rx=123c used=56%
"""


async def test_long_output_and_multiline_perfdata(tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_text(DISK_OUTPUT)
    script = plugin(tmp_path, f"cat '{tmp_path / 'out.txt'}'\n")
    res = await probe(command([str(script)]))
    assert res.status is Status.OK
    assert res.summary == "DISK OK - free space: / 3326 MB (56%);"
    assert res.details["long_output"] == \
        "/ 15272 MB (77%);\n/boot 68 MB (69%);\n/var/log 819 MB (84%);"
    assert perfdata_metrics(res) == {
        "/": (2643 * 1024**2, "bytes"),
        "/boot": (68 * 1024**2, "bytes"),
        "/var log": (818 * 1024**2, "bytes"),
        "time": (pytest.approx(0.012), "seconds"),
        "rx": (123, "counter"),
        "used": (56, "percent"),
    }
    it_s = next(p for p in res.details["perfdata"] if p["label"] == "it's")
    assert it_s["value"] is None  # U: undetermined, no sample
    root = res.details["perfdata"][0]
    assert root == {"label": "/", "value": 2643.0, "uom": "MB", "warn": "5948",
                    "crit": "5958", "min": 0.0, "max": 5968.0}


@pytest.mark.parametrize(("item", "value", "unit"), [
    ("t=1.5s", 1.5, "seconds"),
    ("t=250ms", 0.25, "seconds"),
    ("t=40us", 40e-6, "seconds"),
    ("t=7ns", 7e-9, "seconds"),
    ("m=1B", 1, "bytes"),
    ("m=2KB", 2048, "bytes"),
    ("m=2kB", 2048, "bytes"),
    ("m=3GiB", 3 * 1024**3, "bytes"),
    ("m=1TB", 1024**4, "bytes"),
    ("p=99.5%", 99.5, "percent"),
    ("n=-3", -3, ""),
    ("n=1e3", 1000, ""),
    ("n=1,5", 1.5, ""),       # a decimal comma from a localised plugin
    ("q=12qps", 12, "qps"),   # unknown unit: as written
])
def test_units_to_base(item: str, value: float, unit: str) -> None:
    [parsed], malformed = parse_perfdata(item)
    assert malformed == ()
    assert parsed.value is not None
    converted, base = parsed.in_base_unit(parsed.value)
    assert converted == pytest.approx(value)
    assert base == unit


def test_perfdata_quoting_ranges_and_malformed_items() -> None:
    items, malformed = parse_perfdata(
        "'a b'=1;~:10;@5:8;0;100 'it''s'=2 bad== =3 c=x  'open=4")
    assert items == (Perfdata(label="a b", value=1, uom="", warn="~:10", crit="@5:8",
                              min=0, max=100),
                     Perfdata(label="it's", value=2, uom=""))
    assert malformed == ("bad==", "=3", "c=x", "'open=4")


def test_output_without_perfdata() -> None:
    out = parse_output("PROCS OK: 12 processes\nline two\n")
    assert (out.text, out.long_text, out.perfdata) == ("PROCS OK: 12 processes", "line two", ())


async def test_repeated_label_gives_one_series(tmp_path: Path) -> None:
    script = plugin(tmp_path, "echo 'OK | a=1 a=2'\n")
    res = await probe(command([str(script)]))
    assert perfdata_metrics(res) == {"a": (1, "")}
    assert len(res.details["perfdata"]) == 2


async def test_huge_output_is_bounded(tmp_path: Path) -> None:
    body = "import sys\nsys.stdout.write('OK big | n=1\\n' + ('x' * 1000 + '\\n') * 20000)\n"
    script = plugin(tmp_path, body, interpreter=sys.executable)
    res = await probe(command([str(script)], max_output_bytes=4096))
    assert (res.status, res.summary) == (Status.OK, "OK big")
    assert res.details["output_truncated"] is True
    assert len(res.details["long_output"].encode()) <= 4096
    assert perfdata_metrics(res) == {"n": (1, "")}


async def test_stderr_goes_to_details(tmp_path: Path) -> None:
    script = plugin(tmp_path, "echo 'CRITICAL - down'\necho 'trace: conn refused' >&2\nexit 2\n")
    res = await probe(command([str(script)]))
    assert res.summary == "CRITICAL - down"
    assert res.details["stderr"] == "trace: conn refused\n"


async def test_long_first_line_is_cut_for_the_summary(tmp_path: Path) -> None:
    script = plugin(tmp_path, f"echo 'OK {'y' * 1000}'\n")
    res = await probe(command([str(script)]))
    assert len(res.summary) == 300 and res.summary.endswith("…")


# --- how it runs ------------------------------------------------------------------------


async def test_command_string_is_split_like_a_shell_but_not_run_by_one(tmp_path: Path) -> None:
    script = plugin(tmp_path, 'echo "OK args=[$1] [$2]"\n')
    check = command(f"'{script}' --name 'a b; echo injected' $HOME")
    assert check.command == (str(script), "--name", "a b; echo injected", "$HOME")
    res = await probe(check)
    assert res.summary == "OK args=[--name] [a b; echo injected]"


async def test_env_secret_env_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDWATCH_TEST_SECRET", "s3cret")
    workdir = tmp_path / "work"
    workdir.mkdir()
    script = plugin(tmp_path, 'echo "OK $PLUGIN_MODE $PLUGIN_PASSWORD $(pwd) $PATH"\n')
    res = await probe(command([str(script)], env={"PLUGIN_MODE": "fast"}, cwd=str(workdir),
                              secret_env={"PLUGIN_PASSWORD": {"env": "WARDWATCH_TEST_SECRET"}}))
    assert res.summary == f"OK fast s3cret {workdir} {os.environ['PATH']}"


async def test_missing_program_is_exec_failed(tmp_path: Path) -> None:
    res = await probe(command([str(tmp_path / "no_such_plugin")]))
    assert (res.status, res.reason) == (Status.UNKNOWN, "exec_failed")
    assert "No such file or directory" in res.summary


async def test_program_not_on_path_is_exec_failed() -> None:
    res = await probe(command("check_wardwatch_does_not_exist -w 1"))
    assert (res.status, res.reason) == (Status.UNKNOWN, "exec_failed")


async def test_not_executable_is_exec_failed(tmp_path: Path) -> None:
    script = plugin(tmp_path, "echo OK\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    res = await probe(command([str(script)]))
    assert (res.status, res.reason) == (Status.UNKNOWN, "exec_failed")
    assert "Permission denied" in res.summary


async def test_missing_cwd_is_exec_failed(tmp_path: Path) -> None:
    script = plugin(tmp_path, "echo OK\n")
    res = await probe(command([str(script)], cwd=str(tmp_path / "gone")))
    assert (res.status, res.reason) == (Status.UNKNOWN, "exec_failed")
    assert str(tmp_path / "gone") in res.summary


async def test_hung_plugin_is_killed_with_its_children_at_the_timeout(tmp_path: Path) -> None:
    script = plugin(tmp_path, f"sleep 1000 &\necho $! > '{tmp_path}/child.pid'\n"
                              f"echo $$ > '{tmp_path}/plugin.pid'\nwait\n")
    res = await run_check(command([str(script)], timeout=0.5), "agent-1")
    assert (res.status, res.reason) == (Status.CRITICAL, "timeout")
    assert 0.5 <= res.duration_s < 1.0
    for name in ("plugin.pid", "child.pid"):
        pid = int((tmp_path / name).read_text())
        assert wait_gone(pid), f"{name} {pid} still running"


async def test_children_left_behind_do_not_hold_the_result(tmp_path: Path) -> None:
    # the background child inherits stdout: without killing it the read would never end
    script = plugin(tmp_path, f"sleep 1000 &\necho $! > '{tmp_path}/child.pid'\n"
                              "echo 'OK done'\n")
    started = time.monotonic()
    res = await probe(command([str(script)]))
    assert (res.status, res.summary) == (Status.OK, "OK done")
    assert time.monotonic() - started < 2
    assert wait_gone(int((tmp_path / "child.pid").read_text()))


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    ("", "at least 1 item"),
    ("check 'unbalanced", "cannot split the command line"),
    ([""], "must not be empty"),
])
def test_command_config_errors(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        command(value)


def test_env_names_are_checked() -> None:
    with pytest.raises(ValidationError, match="not an environment variable name"):
        command(["/bin/true"], env={"A=B": "x"})


def test_target_is_the_command_line() -> None:
    assert command(["/usr/lib/nagios/plugins/check_load", "-w", "5,4,3"]).target == \
        "/usr/lib/nagios/plugins/check_load -w 5,4,3"
