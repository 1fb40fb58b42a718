"""`wardwatch-agent`: run the daemon, run checks once (a Nagios plugin), validate a config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import ssl
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from agent.app import AGENT_KEY, Agent, create_app
from agent.config import AgentConfig, load_agent_config
from agent.logs import setup_logging
from agent.runner import run_check
from probes.config import CheckConfig, ConfigError
from probes.result import CheckResult, Status, worst_exit_code
from probes.sdnotify import Notifier

log = logging.getLogger("wardwatch.agent")

EXIT_CONFIG = 3  # Nagios UNKNOWN: the plugin itself could not run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wardwatch-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config", required=True)
    check = sub.add_parser("check", help="run the configured checks once and print results")
    check.add_argument("--config", required=True)
    check.add_argument("--only", action="append", metavar="CHECK_ID",
                       help="run only this check (repeatable)")
    check.add_argument("--json", action="store_true", help="print results as JSON")
    validate = sub.add_parser("validate", help="check a config file and exit")
    validate.add_argument("--config", required=True)
    from agent import winservice

    winservice.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "service":
        return winservice.service_command(args)

    try:
        config = load_agent_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG if args.command == "check" else 1
    if args.command == "validate":
        print(f"{args.config}: OK, agent {config.agent.id}, {len(config.checks)} checks")
        return 0
    if any(check.kind == "oracle" for check in config.checks):
        # Oracle 11.2 needs thick mode, fixed per process: chosen here, before any connection
        from probes.oracle import ThickModeError, enable_thick_mode_for

        try:
            enable_thick_mode_for(config.checks)   # loads oracledb only for a thick check
        except ThickModeError as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG if args.command == "check" else 1
    if args.command == "check":
        return _check(config, args.only, args.json)
    setup_logging(config.agent.log_format, config.agent.log_level)
    return _run(config)


def _check(config: AgentConfig, only: list[str] | None, as_json: bool) -> int:
    checks = config.checks
    if only:
        unknown = sorted(set(only) - {c.id for c in checks})
        if unknown:
            print(f"{config.source}: no check with id {', '.join(unknown)}", file=sys.stderr)
            return EXIT_CONFIG
        checks = tuple(c for c in checks if c.id in only)
    setup_logging("text", "warning")

    async def run_all() -> list[CheckResult]:
        use_probe_threads(config.agent.probe_threads)
        slots = asyncio.Semaphore(256)

        async def one(check_config: CheckConfig) -> CheckResult:
            async with slots:
                return await run_check(check_config, config.agent.id)

        return list(await asyncio.gather(*(one(c) for c in checks)))

    results = asyncio.run(run_all())
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in results], ensure_ascii=False,
                         indent=2))
    else:
        print(format_table(results))
    return worst_exit_code([r.status for r in results])


def format_table(results: list[CheckResult]) -> str:
    rows = [("CHECK", "KIND", "SYSTEM", "STATUS", "TIME", "SUMMARY")]
    for r in results:
        rows.append((r.check_id, r.kind, r.system or "-", r.status.value.upper(),
                     f"{r.duration_s * 1000:.0f}ms", r.summary))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True))
             + "  " + row[5] for row in rows]
    counts = {s: sum(1 for r in results if r.status is s) for s in Status}
    lines.append(", ".join(f"{n} {s.value}" for s, n in counts.items() if n) or "no checks")
    return "\n".join(lines)


def _run(config: AgentConfig) -> int:
    app = create_app(config)
    return asyncio.run(_serve(app, config))


def use_probe_threads(count: int) -> None:
    """Blocking probe work (psutil, paramiko) runs in the loop's default executor; a hung call
    holds its thread until its own socket timeout, so the pool is larger than the default."""
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=count, thread_name_prefix="probe"))


async def _serve(app: web.Application, config: AgentConfig,
                 stop: asyncio.Event | None = None,
                 on_ready: Callable[[], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, or until `stop` is set when a service wrapper owns the
    process (Windows); `on_ready` is called once /metrics answers and the checks run."""
    notifier = Notifier.from_environ()
    use_probe_threads(config.agent.probe_threads)
    host, port = config.agent.host_port
    ssl_context = None
    if config.agent.tls is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.agent.tls.cert_file, config.agent.tls.key_file)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.agent.listen, exc.strerror or exc)
        notifier.notify(f"STATUS=cannot listen on {config.agent.listen}")
        await runner.cleanup()
        return 1
    log.info("serving /metrics and /healthz on %s://%s",
             "https" if ssl_context else "http", config.agent.listen)

    loop = asyncio.get_running_loop()
    agent = app[AGENT_KEY]
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Windows has no loop signal handlers: the service wrapper passes `stop` there
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if hasattr(signal, "SIGHUP"):
            loop.add_signal_handler(signal.SIGHUP, _reload, agent, notifier)
    # the scheduler started in runner.setup(): the first schedule is running and /metrics
    # answers, which is what READY=1 promises to systemd (Type=notify)
    notifier.ready(_status_line(agent))
    if on_ready is not None:
        on_ready()
    watchdog = asyncio.create_task(notifier.run_watchdog(lambda: _status_line(agent)),
                                   name="sd-watchdog")
    await stop.wait()
    log.info("shutting down")
    notifier.stopping()
    try:
        await runner.cleanup()   # the watchdog keeps pinging while the spool flushes
    finally:
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
    return 0


def _reload(agent: Agent, notifier: Notifier) -> None:
    notifier.reloading()
    agent.reload()
    notifier.ready(_status_line(agent))


def _status_line(agent: Agent) -> str:
    """One line for `systemctl status`: how many checks run and how the latest went."""
    latest = agent.state.latest.values()
    counts = {s: sum(1 for r in latest if r.status is s) for s in Status}
    done = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n) or "no results yet"
    line = f"{len(agent.state.checks)} checks: {done}"
    if not agent.state.reload_ok:
        line += "; last reload failed"
    return line


if __name__ == "__main__":
    sys.exit(main())
