"""A real Tomcat for tests: Debian's tomcat10 + tomcat10-admin in a throwaway CATALINA_BASE.

`start_tomcat(base)` writes the base (server.xml with one HTTP connector on a free loopback
port and `maxThreads` 10 so that busy threads are easy to reach, no shutdown port, no AJP;
tomcat-users.xml with the test users; the Debian manager wired in as Debian wires it, a `slow`
webapp whose JSP sleeps on request, a static `stopme` webapp), starts
`catalina.sh run` with a small heap and waits until the manager answers. One JVM per test
session: the 2-core machines we test on pay ~1.5 s per start.

`python -m tests.tomcat [runs]` starts one and prints the tomcat probe's cost per run
(docs/probes/tomcat.md quotes it).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.services import free_port, needs, stop_process, wait_for_port

CATALINA_HOME = Path("/usr/share/tomcat10")
MANAGER_DIR = Path("/usr/share/tomcat10-admin/manager")
MAX_THREADS = 10

ADMIN = "wardwatch"
"""manager-status and manager-script: everything the probe reads."""
STATUS_ONLY = "statusonly"
"""manager-status only: /manager/status yes, /manager/text/* no (403)."""
NO_ROLES = "noroles"
"""Authenticates, holds no manager role: 403 everywhere."""


@dataclass(frozen=True)
class Tomcat:
    port: int
    base_url: str
    base: Path
    max_threads: int

    def password_file(self, user: str) -> Path:
        return self.base / "secrets" / f"{user}.pw"

    @property
    def wrong_password_file(self) -> Path:
        return self.base / "secrets" / "wrong.pw"

    def manage(self, command: str, user: str = ADMIN) -> str:
        """A manager text command (`stop?path=/stopme`), as the given user; the reply text."""
        return _get(f"{self.base_url}/manager/text/{command}", user,
                    self.password_file(user).read_text().strip())


def _get(url: str, user: str, password: str, timeout: float = 5.0) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return str(response.read().decode("utf-8", errors="replace"))


def tomcat_missing() -> str | None:
    """Why Tomcat cannot run here, or None."""
    if not (CATALINA_HOME / "bin" / "catalina.sh").exists():
        return "tomcat10 (Debian package; scripts/install-system-packages installs it)"
    if not (MANAGER_DIR / "WEB-INF" / "web.xml").exists():
        return "tomcat10-admin (Debian package; scripts/install-system-packages installs it)"
    if shutil.which("java") is None:
        return "java (default-jre-headless, a dependency of tomcat10)"
    return None


def start_tomcat(base: Path) -> tuple[subprocess.Popen[bytes], Tomcat]:
    """Write a CATALINA_BASE under `base`, start Tomcat in it and wait for the manager."""
    missing = tomcat_missing()
    needs(missing is None, missing or "")
    port = free_port()
    _write_base(base, port)
    env = {**os.environ, "CATALINA_HOME": str(CATALINA_HOME), "CATALINA_BASE": str(base),
           "CATALINA_TMPDIR": str(base / "temp"),
           # C1 only and a small heap: start-up speed matters here, not peak throughput.
           "CATALINA_OPTS": "-Xmx128m -Xss512k -XX:TieredStopAtLevel=1 -Xshare:auto "
                            "-XX:+UseSerialGC -Djava.security.egd=file:/dev/./urandom"}
    env.pop("JAVA_OPTS", None)
    log = (base / "logs" / "console.log").open("wb")
    # `run` execs java in the foreground, so terminate() reaches the JVM itself.
    proc = subprocess.Popen([str(CATALINA_HOME / "bin" / "catalina.sh"), "run"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    server = Tomcat(port=port, base_url=f"http://127.0.0.1:{port}", base=base,
                    max_threads=MAX_THREADS)
    try:
        wait_for_port(port, timeout=60)
        _wait_for_manager(server, proc, timeout=30)
        # Compile the JSP now, so the first overload test does not queue behind Jasper.
        urllib.request.urlopen(f"{server.base_url}/slow/sleep.jsp?ms=0", timeout=30).close()
    except (TimeoutError, OSError, RuntimeError) as exc:
        stop_process(proc)
        console = (base / "logs" / "console.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Tomcat did not start: {exc}\n{console}") from None
    return proc, server


def _wait_for_manager(server: Tomcat, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"catalina.sh exited with {proc.returncode}")
        try:
            if server.manage("serverinfo").startswith("OK"):
                return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the manager did not answer within {timeout}s")
        time.sleep(0.1)


def _write_base(base: Path, port: int) -> None:
    for sub in ("conf/Catalina/localhost", "logs", "temp", "work", "secrets",
                "webapps/slow/WEB-INF", "webapps/slow/META-INF", "webapps/stopme"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    passwords = {user: secrets.token_urlsafe(12) for user in (ADMIN, STATUS_ONLY, NO_ROLES)}
    for user, password in passwords.items():
        (base / "secrets" / f"{user}.pw").write_text(password + "\n")
    (base / "secrets" / "wrong.pw").write_text("not-" + passwords[ADMIN] + "\n")
    for path in (base / "secrets").iterdir():
        path.chmod(0o600)

    conf = base / "conf"
    (conf / "server.xml").write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="HTTP/1.1"
               maxThreads="{MAX_THREADS}" minSpareThreads="2" connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost">
      <!-- MemoryRealm: no JNDI user database; no LockOutRealm, whose lock-out after the
           wrong-password test would fail the tests that follow. -->
      <Realm className="org.apache.catalina.realm.MemoryRealm"
             pathname="conf/tomcat-users.xml"/>
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"
            deployOnStartup="true"/>
    </Engine>
  </Service>
</Server>
""")
    (conf / "tomcat-users.xml").write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<tomcat-users>
  <role rolename="manager-status"/>
  <role rolename="manager-script"/>
  <user username="{ADMIN}" password="{passwords[ADMIN]}" roles="manager-status,manager-script"/>
  <user username="{STATUS_ONLY}" password="{passwords[STATUS_ONLY]}" roles="manager-status"/>
  <user username="{NO_ROLES}" password="{passwords[NO_ROLES]}" roles="tomcat"/>
</tomcat-users>
""")
    # The parts of Debian's conf/web.xml the test webapps use: static files and JSP.
    (conf / "web.xml").write_text("""<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0">
  <servlet>
    <servlet-name>default</servlet-name>
    <servlet-class>org.apache.catalina.servlets.DefaultServlet</servlet-class>
    <init-param><param-name>listings</param-name><param-value>false</param-value></init-param>
    <load-on-startup>1</load-on-startup>
  </servlet>
  <servlet>
    <servlet-name>jsp</servlet-name>
    <servlet-class>org.apache.jasper.servlet.JspServlet</servlet-class>
    <init-param><param-name>fork</param-name><param-value>false</param-value></init-param>
    <load-on-startup>3</load-on-startup>
  </servlet>
  <servlet-mapping><servlet-name>default</servlet-name><url-pattern>/</url-pattern>
  </servlet-mapping>
  <servlet-mapping><servlet-name>jsp</servlet-name><url-pattern>*.jsp</url-pattern>
  </servlet-mapping>
  <mime-mapping><extension>html</extension><mime-type>text/html</mime-type></mime-mapping>
  <mime-mapping><extension>css</extension><mime-type>text/css</mime-type></mime-mapping>
  <welcome-file-list><welcome-file>index.html</welcome-file></welcome-file-list>
</web-app>
""")
    system_conf = CATALINA_HOME / "etc"
    (conf / "catalina.properties").write_text(
        (system_conf / "catalina.properties").read_text()
        # Nothing in these webapps needs a TLD from a jar: skip the scan (faster start).
        + "\ntomcat.util.scan.StandardJarScanFilter.jarsToSkip=*.jar\n")
    (conf / "logging.properties").write_text(
        "handlers = java.util.logging.ConsoleHandler\n"
        ".level = WARNING\n"
        "java.util.logging.ConsoleHandler.level = WARNING\n"
        "org.apache.catalina.startup.Catalina.level = INFO\n")
    # As Debian's tomcat10-admin does in /etc/tomcat10/Catalina/localhost/manager.xml.
    (conf / "Catalina" / "localhost" / "manager.xml").write_text(
        f'<Context docBase="{MANAGER_DIR}" antiResourceLocking="false" '
        'privileged="true"/>\n')

    slow = base / "webapps" / "slow"
    (slow / "WEB-INF" / "web.xml").write_text(
        '<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0"/>\n')
    (slow / "META-INF" / "context.xml").write_text(
        '<Context><JarScanner scanClassPath="false"/></Context>\n')
    # Sleeps `ms` milliseconds (at most 10 s) holding one connector thread; each request
    # opens a session, so the webapp list shows sessions.
    (slow / "sleep.jsp").write_text(
        '<%@ page contentType="text/plain" %><%\n'
        'String ms = request.getParameter("ms");\n'
        'Thread.sleep(Math.min(10000L, ms == null ? 0L : Long.parseLong(ms)));\n'
        '%>slept\n')
    (base / "webapps" / "stopme" / "index.html").write_text("<p>stop me</p>\n")


def measure(runs: int) -> None:
    """Print the tomcat probe's cost per run against a fresh local Tomcat."""
    from probes.memory import ProbeMemory
    from probes.tomcat import TomcatCheck, probe

    with tempfile.TemporaryDirectory(prefix="wardwatch-tomcat-") as tmp:
        proc, server = start_tomcat(Path(tmp))
        try:
            check = TomcatCheck.model_validate({
                "id": "measure", "kind": "tomcat", "url": server.base_url, "username": ADMIN,
                "password_file": str(server.password_file(ADMIN))})

            async def loop() -> list[tuple[float, int, int]]:
                memory = ProbeMemory()
                costs = []
                for _ in range(runs):
                    started = time.perf_counter()
                    outcome = await probe(check, memory)
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    cost = outcome.details["probe_cost"]
                    costs.append((elapsed_ms, cost["bytes_received"], cost["requests"]))
                return costs

            costs = asyncio.run(loop())
            wire = [_wire_bytes(server, path) for path in (
                "/manager/status?XML=true", "/manager/text/serverinfo", "/manager/text/list")]
        finally:
            stop_process(proc)
    warm = costs[1:] or costs
    ms = sorted(c[0] for c in warm)
    print(f"runs: {len(costs)} (first, cold: {costs[0][0]:.1f} ms)")
    print(f"ms per run: median {statistics.median(ms):.1f}, "
          f"p90 {ms[int(len(ms) * 0.9) - 1]:.1f}, max {ms[-1]:.1f}")
    print(f"requests per run: {warm[0][2]}; body bytes received per run: "
          f"median {statistics.median(c[1] for c in warm):.0f}")
    print("on the wire, headers included (one request each, as the probe sends them): "
          + ", ".join(f"{path} {sent} B sent / {received} B received"
                      for path, sent, received in wire)
          + f"; total {sum(w[1] + w[2] for w in wire)} B")


def _wire_bytes(server: Tomcat, path: str) -> tuple[str, int, int]:
    """(path, bytes sent, bytes received) of one request as the probe's client sends it."""
    token = base64.b64encode(
        f"{ADMIN}:{server.password_file(ADMIN).read_text().strip()}".encode()).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
               "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
               "User-Agent: wardwatch-tomcat-probe\r\n"
               f"Authorization: Basic {token}\r\nConnection: close\r\n\r\n").encode()
    received = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            received += len(chunk)
    return path.split("?")[0], len(request), received


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
