"""The policy engine and the hardening probe against real configurations: Debian's nginx started
with insecure and hardened settings, a real Tomcat 10.1 CATALINA_BASE (started once, so the
configuration read is the live one), `sshd -T` on permissive and hardened configs, this
machine's Linux files and tmp copies; WebLogic config.xml and Windows registry output from
recorded fixtures (tests/probes/fixtures/policy/README.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
import trustme

from probes.access import CommandOutput, LocalAccess
from probes.config import ConfigError
from probes.hardening import METRICS, HardeningCheck, probe
from probes.policy import (
    CheckOutcome,
    Policy,
    Result,
    evaluate,
    load_policy,
    load_policy_text,
    mask_secrets,
    shipped_policies,
    shipped_policy,
    xml_lines,
)
from probes.result import Status
from tests.services import NGINX_BIN, Nginx, free_port, needs, start_nginx, stop_process
from tests.tomcat import Tomcat, start_tomcat

FIXTURES = Path(__file__).parent / "fixtures" / "policy"
SSHD = "/usr/sbin/sshd"


async def run(policy: Policy | str, **overrides: str | list[str]) -> dict[str, CheckOutcome]:
    if isinstance(policy, str):
        policy = shipped_policy(policy)
    return {o.id: o for o in await evaluate(policy, LocalAccess(), overrides)}


def line_of(path: Path, text: str) -> str:
    """`path:N` of the first line containing `text`."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return f"{path}:{number}"
    raise AssertionError(f"{text!r} not in {path}")


def policy_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


CHECK_HEAD = """
policy: {id: local, name: Local test policy}
checks:
  - id: c
    title: t
    severity: low
    remediation: r
    dengbao: ["8.1.4.4 b) 入侵防范：关闭不需要的系统服务、默认共享和高危端口"]
"""


# --- shipped policies load -----------------------------------------------------------------


def test_shipped_policies_load_and_map_to_dengbao() -> None:
    assert shipped_policies() == ["linux", "nginx", "sshd", "tomcat", "weblogic"]
    for policy_id in shipped_policies():
        policy = shipped_policy(policy_id)
        assert policy.id == policy_id
        for check in policy.checks:
            assert check.dengbao and check.remediation, f"{policy_id}.{check.id}"


# --- nginx, started for real ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("cert")
    leaf = trustme.CA().issue_cert("localhost", "127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "key.pem"))
    return directory / "cert.pem", directory / "key.pem"


@pytest.fixture
def insecure_nginx(tmp_path: Path, cert: tuple[Path, Path]) -> Iterator[Nginx]:
    proc, server = start_nginx(tmp_path / "insecure", """
    server_tokens on;
    autoindex on;
    ssl_protocols TLSv1 TLSv1.2;
    location = /nginx_status { stub_status; }
    """, tls=cert)
    try:
        yield server
    finally:
        stop_process(proc)


@pytest.fixture
def hardened_nginx(tmp_path: Path, cert: tuple[Path, Path]) -> Iterator[Nginx]:
    proc, server = start_nginx(tmp_path / "hardened", """
    server_tokens off;
    autoindex off;
    ssl_protocols TLSv1.2 TLSv1.3;
    client_max_body_size 20m;
    location = /nginx_status { stub_status; allow 127.0.0.1; deny all; }
    """, tls=cert)
    try:
        yield server
    finally:
        stop_process(proc)


async def test_nginx_insecure_settings_fail_with_file_and_line(insecure_nginx: Nginx) -> None:
    conf = insecure_nginx.prefix / "nginx.conf"
    found = await run("nginx", nginx_files=[str(conf)])
    assert {k: o.result for k, o in found.items()} == {
        "server_tokens": Result.FAILED, "tls_protocols": Result.FAILED,
        "autoindex": Result.FAILED, "stub_status_restricted": Result.FAILED,
        "client_max_body_size": Result.FAILED}
    assert found["autoindex"].evidence == f"{line_of(conf, 'autoindex on')}: autoindex on;"
    assert found["tls_protocols"].evidence == (
        f"{line_of(conf, 'ssl_protocols')}: ssl_protocols TLSv1 TLSv1.2;")
    assert found["server_tokens"].evidence.startswith("no line matches")
    assert str(conf) in found["server_tokens"].evidence
    assert found["tls_protocols"].severity == "high"
    assert any(c.startswith("8.1.2.2 b)") for c in found["tls_protocols"].dengbao)


async def test_nginx_hardened_settings_pass(hardened_nginx: Nginx) -> None:
    conf = hardened_nginx.prefix / "nginx.conf"
    # The file the policy reads is the one the running nginx accepted.
    tested = await LocalAccess().run([NGINX_BIN, "-t", "-q", "-p", str(hardened_nginx.prefix),
                                      "-c", str(conf)], limit_s=10)
    assert tested.ok, tested.stderr
    found = await run("nginx", nginx_files=[str(conf)])
    assert {o.result for o in found.values()} == {Result.PASSED}, found
    assert found["server_tokens"].evidence == (
        f"{line_of(conf, 'server_tokens')}: server_tokens off;")


async def test_nginx_includes_by_glob_and_absent_nginx(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "nginx.conf").write_text("http {\n  include conf.d/*.conf;\n}\n")
    (tmp_path / "conf.d" / "a.conf").write_text("server_tokens off;\n")
    (tmp_path / "conf.d" / "b.conf").write_text("server {\n  autoindex on;\n}\n")
    found = await run("nginx", nginx_files=[str(tmp_path / "nginx.conf"),
                                            str(tmp_path / "conf.d/*.conf")])
    assert found["server_tokens"].result is Result.PASSED
    assert found["server_tokens"].evidence == f"{tmp_path}/conf.d/a.conf:1: server_tokens off;"
    assert found["autoindex"].evidence == f"{tmp_path}/conf.d/b.conf:2: autoindex on;"
    assert found["tls_protocols"].result is Result.NOT_APPLICABLE   # no TLS configured
    absent = await run("nginx", nginx_files=[str(tmp_path / "nope/nginx.conf")])
    assert {o.result for o in absent.values()} == {Result.NOT_APPLICABLE}
    assert "does not apply" in absent["autoindex"].evidence


# --- Tomcat, started for real --------------------------------------------------------------


@pytest.fixture(scope="module")
def tomcat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomcat]:
    proc, server = start_tomcat(tmp_path_factory.mktemp("tomcat"))
    try:
        yield server
    finally:
        stop_process(proc)


async def test_tomcat_live_base(tomcat: Tomcat) -> None:
    found = await run("tomcat", catalina_base=str(tomcat.base))
    server_xml = tomcat.base / "conf" / "server.xml"
    manager_xml = tomcat.base / "conf/Catalina/localhost/manager.xml"
    assert found["manager_app"].result is Result.FAILED
    assert f"{manager_xml} exists" in found["manager_app"].evidence
    assert found["host_manager_app"].result is Result.PASSED
    assert found["examples_docs"].result is Result.PASSED
    assert found["shutdown_port"].result is Result.PASSED
    assert found["shutdown_port"].evidence.startswith(f"{line_of(server_xml, '<Server')}: "
                                                      '<Server port="-1"')
    assert found["ajp_connector"].result is Result.PASSED
    assert found["default_users"].result is Result.PASSED
    # MemoryRealm without a CredentialHandler: the test users' passwords are in clear …
    plain = found["plaintext_passwords"]
    assert plain.result is Result.FAILED
    assert 'password="***"' in plain.evidence
    # … and never leave in the evidence.
    for secret in (tomcat.base / "secrets").glob("*.pw"):
        assert secret.read_text().strip() not in plain.evidence
    assert found["server_info"].result is Result.FAILED


def tomcat_base(tmp_path: Path, server_xml: str, users: str) -> Path:
    (tmp_path / "conf").mkdir(parents=True)
    (tmp_path / "webapps" / "ROOT").mkdir(parents=True)
    (tmp_path / "conf" / "server.xml").write_text(server_xml)
    (tmp_path / "conf" / "tomcat-users.xml").write_text(users)
    return tmp_path


async def test_tomcat_defaults_fail_and_comments_do_not_count(tmp_path: Path) -> None:
    base = tomcat_base(tmp_path, """<?xml version="1.0" encoding="UTF-8"?>
<Server port="8005"
        shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="AJP/1.3" address="0.0.0.0" port="8009"
               redirectPort="8443" secretRequired="false"/>
  </Service>
</Server>
""", """<tomcat-users>
<!--
  <user username="admin" password="<must-be-changed>" roles="manager-gui"/>
-->
  <user username="tomcat" password="<must-be-changed>" roles="tomcat"/>
</tomcat-users>
""")
    (base / "webapps" / "examples").mkdir()
    found = await run("tomcat", catalina_base=str(base))
    users = base / "conf" / "tomcat-users.xml"
    assert found["manager_app"].result is Result.PASSED
    assert found["examples_docs"].result is Result.FAILED
    assert found["shutdown_port"].result is Result.FAILED
    assert found["ajp_connector"].result is Result.FAILED
    assert found["ajp_connector"].evidence.startswith(f"{base}/conf/server.xml:5: <Connector")
    assert found["default_users"].result is Result.FAILED
    assert found["default_users"].evidence == (
        f"{users}:5: <user username=\"tomcat\" password=\"***\" roles=\"tomcat\"/>")

    commented = tomcat_base(tmp_path / "b", '<Server port="-1"><Valve className='
                            '"org.apache.catalina.valves.ErrorReportValve"\n'
                            ' showServerInfo="false"/></Server>\n',
                            "<tomcat-users>\n<!-- <user username=\"tomcat\" "
                            "password=\"<must-be-changed>\" roles=\"tomcat\"/> -->\n"
                            "</tomcat-users>\n")
    found = await run("tomcat", catalina_base=str(commented))
    assert found["default_users"].result is Result.PASSED
    assert found["plaintext_passwords"].result is Result.PASSED
    assert found["server_info"].result is Result.PASSED


def test_xml_lines_keep_line_numbers() -> None:
    text = "<a>\n<!-- x\ny -->\n<Server port=\"1\"\n  shutdown=\"S\">\nafter\n"
    assert xml_lines(text).splitlines() == [
        "<a>", "", "", '<Server port="1" shutdown="S">', "", "after"]


# --- sshd -T on tmp configs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """sshd, or a wrapper giving it the privilege separation directory it insists on."""
    needs(Path(SSHD).exists(), "openssh-server (/usr/sbin/sshd)")
    if Path("/run/sshd").is_dir():
        return SSHD
    # sshd -T refuses to run without /run/sshd (created by the service's RuntimeDirectory).
    # Give it one in a private mount namespace instead of touching the machine's /run.
    needs(os.geteuid() == 0 and shutil.which("unshare") is not None,
          "root and unshare, to give sshd -T a private /run/sshd")
    wrapper = tmp_path_factory.mktemp("sshd") / "sshd"
    wrapper.write_text("#!/bin/sh\nexec unshare --mount sh -c 'mount -t tmpfs tmpfs /run && "
                       f"mkdir -m 755 /run/sshd && exec {SSHD} \"$@\"' sshd \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def sshd_config(tmp_path: Path, body: str) -> Path:
    key = tmp_path / "host_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
    conf = tmp_path / "sshd_config"
    conf.write_text(f"HostKey {key}\n{body}")
    return conf


async def test_sshd_permissive_and_hardened(tmp_path: Path, sshd_bin: str) -> None:
    permissive = sshd_config(tmp_path, "PermitRootLogin yes\nPasswordAuthentication yes\n"
                                       "MaxAuthTries 6\nCiphers aes128-cbc,aes256-ctr\n")
    found = await run("sshd", sshd_bin=sshd_bin, sshd_config=str(permissive),
                      sshd_config_files=[str(permissive)])
    assert {k: o.result for k, o in found.items()} == {
        "root_login": Result.FAILED, "password_auth": Result.FAILED,
        "empty_passwords": Result.PASSED, "max_auth_tries": Result.FAILED,
        "idle_timeout": Result.FAILED, "weak_algorithms": Result.FAILED,
        "protocol_1": Result.PASSED}
    assert found["root_login"].evidence.endswith(": permitrootlogin yes")
    assert "maxauthtries 6 (6, expected <= 4)" in found["max_auth_tries"].evidence
    assert "aes128-cbc" in found["weak_algorithms"].evidence

    hardened = sshd_config(tmp_path, "PermitRootLogin no\nPasswordAuthentication no\n"
                                     "MaxAuthTries 3\nClientAliveInterval 300\n")
    found = await run("sshd", sshd_bin=sshd_bin, sshd_config=str(hardened),
                      sshd_config_files=[str(hardened)])
    assert {o.result for o in found.values()} == {Result.PASSED}, found
    assert "clientaliveinterval 300 (300 > 0)" in found["idle_timeout"].evidence


async def test_sshd_falls_back_to_the_file_without_sshd(tmp_path: Path) -> None:
    conf = sshd_config(tmp_path, "PermitRootLogin yes\nPasswordAuthentication no\n")
    found = await run("sshd", sshd_bin=str(tmp_path / "no-sshd"), sshd_config=str(conf),
                      sshd_config_files=[str(conf)])
    assert found["root_login"].result is Result.FAILED
    assert found["root_login"].evidence.endswith(
        f"{tmp_path}/no-sshd is not installed here; instead: {conf}:2: PermitRootLogin yes")
    assert found["password_auth"].result is Result.PASSED
    assert found["idle_timeout"].result is Result.FAILED      # not set: no line to compare


# --- Linux ---------------------------------------------------------------------------------


async def test_linux_policy_evaluates_on_this_machine() -> None:
    found = await run("linux")
    errors = {k: o.evidence for k, o in found.items() if o.result is Result.ERROR}
    assert not errors
    assert found["only_root_uid0"].result is Result.PASSED


async def test_linux_policy_on_fixture_files(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "pam.d").mkdir(parents=True)
    (etc / "login.defs").write_text("PASS_MAX_DAYS\t90\nPASS_MIN_LEN 6\n")
    (etc / "pwquality.conf").write_text("# minlen = 3\nminlen = 12\n")
    (etc / "pam.d" / "common-auth").write_text(
        "auth required pam_faillock.so preauth\n"
        "auth [success=1 default=bad] pam_unix.so\n")
    (etc / "profile").write_text("readonly TMOUT=600; export TMOUT\n")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                "toor:x:0:0::/root:/bin/sh\n")
    (etc / "logrotate.conf").write_text("weekly\nrotate 26\n")
    (etc / "rsyslog").write_text("/var/log/syslog\n{\n\trotate 4\n\tweekly\n}\n")
    paths = {"login_defs": str(etc / "login.defs"), "passwd_file": str(etc / "passwd"),
             "pwquality_files": [str(etc / "pwquality.conf")],
             "pam_files": [str(etc / "pam.d/*")], "profile_files": [str(etc / "profile")],
             "logrotate_files": [str(etc / "logrotate.conf")]}
    found = await run("linux", **paths)
    assert found["pass_max_days"].result is Result.PASSED
    assert found["pass_max_days"].evidence == f"{etc}/login.defs:1: PASS_MAX_DAYS\t90 (90 <= 90)"
    assert found["password_min_length"].result is Result.PASSED
    assert found["password_min_length"].evidence.startswith(f"{etc}/pwquality.conf:2:")
    assert found["login_lockout"].result is Result.PASSED
    assert found["shell_timeout"].result is Result.PASSED
    assert found["only_root_uid0"].result is Result.FAILED
    assert found["only_root_uid0"].evidence == f"{etc}/passwd:2: toor:x:0:0::/root:/bin/sh"
    assert found["log_retention"].result is Result.PASSED

    # rsyslog's own stanza keeps 4 weeks: every `rotate` line must reach the limit.
    found = await run("linux", **{**paths, "logrotate_files": [str(etc / "logrotate.conf"),
                                                              str(etc / "rsyslog")]})
    assert found["log_retention"].result is Result.FAILED
    assert f"{etc}/rsyslog:3: rotate 4 (4, expected >= 26)" in found["log_retention"].evidence

    (etc / "login.defs").write_text("PASS_MAX_DAYS 99999\n")
    found = await run("linux", **paths)
    assert found["pass_max_days"].result is Result.FAILED
    assert "(99999, expected <= 90)" in found["pass_max_days"].evidence


async def test_unreadable_file_is_an_error_not_a_failure(tmp_path: Path) -> None:
    locked = tmp_path / "login.defs"
    locked.write_text("PASS_MAX_DAYS 90\n")

    class NoReading(LocalAccess):
        async def read_file(self, path: str, *, max_bytes: int = 1 << 20) -> bytes | None:
            return None          # as for a file the agent's user may not read

    [outcome] = [o for o in await evaluate(shipped_policy("linux"), NoReading(),
                                           {"login_defs": str(locked)})
                 if o.id == "pass_max_days"]
    assert outcome.result is Result.ERROR
    assert outcome.evidence == f"{locked} exists but cannot be read by the agent"


async def test_listening_and_process_rules_on_real_ones(tmp_path: Path) -> None:
    import socket

    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        policy = load_policy(policy_yaml(tmp_path, CHECK_HEAD + f"""
    condition: all
    rules:
      - listening: {port}
      - process: '{os.path.basename(sys.executable)}'
"""))
        found = await run(policy)
    assert found["c"].result is Result.PASSED, found["c"].evidence
    assert f"listening on 127.0.0.1:{port}" in found["c"].evidence
    found = await run(policy)
    assert found["c"].result is Result.FAILED
    assert found["c"].evidence == f"nothing listens on TCP port(s) {port}"


# --- WebLogic and the registry: recorded fixtures ------------------------------------------


async def test_weblogic_insecure_and_hardened_domains() -> None:
    insecure = FIXTURES / "weblogic" / "insecure"
    found = await run("weblogic", domain_home=str(insecure))
    assert {k: o.result for k, o in found.items()} == {
        "console_disabled": Result.FAILED, "t3_iiop_filter": Result.FAILED,
        "production_mode": Result.FAILED, "boot_properties_encrypted": Result.FAILED}
    boot = insecure / "servers/AdminServer/security/boot.properties"
    assert found["boot_properties_encrypted"].evidence == f"{boot}:1: username=weblogic"
    assert "Welcome1" not in str(found)

    hardened = FIXTURES / "weblogic" / "hardened"
    found = await run("weblogic", domain_home=str(hardened))
    assert {o.result for o in found.values()} == {Result.PASSED}, found
    config = hardened / "config" / "config.xml"
    assert found["t3_iiop_filter"].evidence.endswith(
        f"{line_of(config, 'deny t3')}: <connection-filter-rule>0.0.0.0/0 * * deny t3 t3s "
        "iiop iiops</connection-filter-rule>")


class RecordedWindows:
    """A Windows host as its PowerShell answered (fixtures/policy/registry)."""

    name = "recorded-windows"
    answers: ClassVar[dict[str, str]] = {
        "RDP-Tcp": "rdp-tcp-nla-off.json",
        "LanmanServer": "lanmanserver-smb1-off.json",
    }

    async def run(self, argv: Sequence[str], *, limit_s: float, privileged: bool = False,
                  max_bytes: int = 1 << 20) -> CommandOutput:
        script = argv[-1]
        for part, name in self.answers.items():
            if part in script:
                return CommandOutput(tuple(argv), 0, (FIXTURES / "registry" / name).read_bytes(),
                                     b"")
        return CommandOutput(tuple(argv), 1, b"",
                             (FIXTURES / "registry" / "key-absent.stderr").read_bytes())

    async def read_file(self, path: str, *, max_bytes: int = 1 << 20) -> bytes | None:
        return None

    async def close(self) -> None:
        return None


async def test_registry_rules_on_recorded_output() -> None:
    policy = load_policy(FIXTURES / "registry" / "windows-test-policy.yaml")
    found = {o.id: o for o in await evaluate(policy, RecordedWindows())}
    assert found["rdp_nla"].result is Result.FAILED
    assert found["rdp_nla"].evidence == (
        "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\WinStations\\RDP-Tcp"
        "\\UserAuthentication: 0 (0, expected == 1)")
    assert found["smb1_off"].result is Result.PASSED
    assert found["rdp_policy"].result is Result.NOT_APPLICABLE
    # On Linux there is no powershell.exe: not applicable, not an error.
    here = {o.id: o.result for o in await evaluate(policy, LocalAccess())}
    assert set(here.values()) == {Result.NOT_APPLICABLE}


# --- the language: strict loading, no shell ------------------------------------------------


def test_validation_errors_name_the_file_and_path(tmp_path: Path) -> None:
    path = policy_yaml(tmp_path, CHECK_HEAD + """
    rules:
      - file: /etc/x
        contians: 'typo'
      - command: "sshd -T; reboot"
      - file: /etc/y
        compare: {regex: 'no group', op: '<=', value: 1}
      - service: ssh
""")
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    assert caught.value.source == str(path)
    assert caught.value.errors == [
        "checks[0].rules[0].contians: unknown key",
        "checks[0].rules[1].command: must be an argv list such as [sshd, -T]: commands never "
        "run through a shell",
        "checks[0].rules[2].compare.regex: the regex must capture the number to compare in "
        "a group: (\\d+)",
        "checks[0].rules[3]: a rule needs one of: file, directory, command, process, "
        "listening, registry, all, any, none"]


@pytest.mark.parametrize(("body", "message"), [
    ("    rules: [{file: '${nope}/x'}]\n", "var ${nope} is not defined under vars:"),
    ("    rules: [{file: relative/x}]\n", "path 'relative/x' must be absolute"),
    ("    rules: [{file: /etc/x, contains: '(', }]\n", "invalid regular expression"),
    ("    rules: [{file: /etc/x, exists: false, contains: a}]\n",
     "give one test per rule, not contains and exists"),
])
def test_policy_mistakes(body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        load_policy_text(CHECK_HEAD + body, "hospital.yaml")
    assert message in str(caught.value), str(caught.value)


def test_clause_ids_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        load_policy_text(CHECK_HEAD.replace("8.1.4.4 b)", "4.4 b)")
                         + "    rules: [{file: /etc/x}]\n", "h.yaml")
    assert caught.value.errors[0].startswith("checks[0].dengbao[0]: '4.4 b)")


async def test_command_argv_never_goes_through_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    policy = load_policy(policy_yaml(tmp_path, CHECK_HEAD + f"""
    rules:
      - command: [echo, "a; touch {marker}"]
        contains: '^a; touch '
"""))
    found = await run(policy)
    assert found["c"].result is Result.PASSED
    assert found["c"].evidence == f"`echo 'a; touch {marker}'`: a; touch {marker}"
    assert not marker.exists()


def test_mask_secrets() -> None:
    assert mask_secrets('<user username="a" password="s3cr3t!" roles="x"/>') == (
        '<user username="a" password="***" roles="x"/>')
    assert mask_secrets("db.password=hunter2") == "db.password=***"
    assert mask_secrets("client_secret: abc") == "client_secret: ***"
    assert mask_secrets("<node-manager-password-encrypted>{AES}x</node-manager-password-"
                        "encrypted>") == ("<node-manager-password-encrypted>***</node-manager-"
                                          "password-encrypted>")
    assert mask_secrets("ldap_default_authtok_password hunter2") == (
        "ldap_default_authtok_password ***")
    assert mask_secrets("PasswordAuthentication no") == "PasswordAuthentication no"
    assert mask_secrets("passwordauthentication yes") == "passwordauthentication yes"


# --- the hardening probe -------------------------------------------------------------------


def hardening(**kw: object) -> HardeningCheck:
    return HardeningCheck.model_validate({"id": "h", "kind": "hardening", **kw})


async def test_hardening_probe_reports_failed_checks(tmp_path: Path,
                                                     insecure_nginx: Nginx) -> None:
    conf = str(insecure_nginx.prefix / "nginx.conf")
    check = hardening(policies=["nginx", "weblogic"],
                      vars={"nginx_files": [conf],
                            "domain_home": str(FIXTURES / "weblogic" / "hardened")})
    assert (check.interval, check.timeout) == (6 * 3600.0, 120.0)
    res = await probe(check)
    assert (res.status, res.reason) == (Status.WARNING, "hardening_failed")
    assert res.summary == (
        "5 of 9 hardening checks failed: nginx.tls_protocols (high), nginx.server_tokens "
        "(medium), nginx.autoindex (medium), nginx.stub_status_restricted (low), "
        "nginx.client_max_body_size (low)")
    metrics = {(m.name, tuple(sorted(m.labels.items()))): m.value for m in res.metrics}
    assert {m.name for m in res.metrics} <= set(METRICS)
    assert metrics["hardening_checks", (("policy", "nginx"), ("result", "failed"))] == 5
    assert metrics["hardening_checks", (("policy", "weblogic"), ("result", "passed"))] == 4
    assert metrics["hardening_failed", (("policy", "nginx"), ("severity", "high"))] == 1
    assert metrics["hardening_score_ratio", (("policy", "nginx"),)] == 0
    assert metrics["hardening_score_ratio", (("policy", "weblogic"),)] == 1
    [autoindex] = [f for f in res.details["findings"] if f["id"] == "autoindex"]
    assert autoindex == {
        "policy": "nginx", "id": "autoindex", "title": autoindex["title"],
        "severity": "medium", "result": "failed",
        "evidence": f"{line_of(Path(conf), 'autoindex on')}: autoindex on;",
        "remediation": autoindex["remediation"], "dengbao": autoindex["dengbao"]}


async def test_hardening_probe_ok_and_error(tmp_path: Path) -> None:
    res = await probe(hardening(policies=["weblogic"],
                                vars={"domain_home": str(FIXTURES / "weblogic" / "hardened")}))
    assert (res.status, res.reason) == (Status.OK, "ok")
    assert res.summary == "all 4 applicable hardening checks passed"

    own = policy_yaml(tmp_path, CHECK_HEAD + """
    rules:
      - command: [sleep, "5"]
        timeout: 0.2
""")
    res = await probe(hardening(policy_files=[str(own)]))
    assert (res.status, res.reason) == (Status.UNKNOWN, "policy_error")
    assert res.summary.startswith("1 of 1 hardening checks could not be evaluated: local.c (")


def test_hardening_config_errors(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="give policies"):
        hardening()
    with pytest.raises(ValidationError, match="no shipped policy 'iis'"):
        hardening(policies=["iis"])
    with pytest.raises(ValidationError, match="vars catalina_bsae belong to none"):
        hardening(policies=["tomcat"], vars={"catalina_bsae": "/opt/tomcat"})
    bad = policy_yaml(tmp_path, "policy: {id: x, name: y}\nchecks: []\n")
    with pytest.raises(ValidationError, match=f"policy file {bad}: checks: List should have "
                                              "at least 1 item"):
        hardening(policy_files=[str(bad)])
