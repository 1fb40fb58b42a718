"""`wardwatch-collector`: run the service, enrol agents, record maintenance, write reports,
or start the embedded demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from collector import unavailable
from collector.app import create_app
from collector.config import CollectorConfig, load_collector_config
from collector.store import Store, StoreError, utcnow
from collector.tls import server_context
from probes.config import ConfigError
from probes.sdnotify import Notifier

log = logging.getLogger("wardwatch.collector")

DEFAULT_CONFIG = "/etc/wardwatch/collector.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wardwatch-collector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    # --config is accepted after the last word: `agents add ID --config FILE`
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"collector config file (default {DEFAULT_CONFIG})")

    sub.add_parser("run", parents=[common], help="serve the API, web UI and /metrics")

    demo = sub.add_parser("demo", help="collector on SQLite in ./wardwatch-data + a local agent")
    demo.add_argument("--data-dir", default="wardwatch-data")
    demo.add_argument("--port", type=int, default=9800)
    demo.add_argument("--agent-port", type=int, default=9810)

    agents = sub.add_parser("agents", help="enrol, revoke and list agents")
    agents_sub = agents.add_subparsers(dest="action", required=True)
    add = agents_sub.add_parser("add", parents=[common],
                                help="enrol an agent; prints its token once")
    add.add_argument("id")
    revoke = agents_sub.add_parser("revoke", parents=[common], help="revoke an agent's token")
    revoke.add_argument("id")
    agents_sub.add_parser("list", parents=[common], help="list enrolled agents")

    maint = sub.add_parser("maintenance", help="planned maintenance and force majeure windows")
    maint_sub = maint.add_subparsers(dest="action", required=True)
    madd = maint_sub.add_parser("add", parents=[common],
                                help="record a window (before or after the fact)")
    madd.add_argument("--system", required=True)
    madd.add_argument("--start", required=True, type=_timestamp)
    madd.add_argument("--end", required=True, type=_timestamp)
    madd.add_argument("--kind", required=True, choices=("planned", "force_majeure"))
    madd.add_argument("--reason", required=True)
    madd.add_argument("--approved-by", required=True)
    madd.add_argument("--by", default="cli", help="who records it (kept in the audit trail)")
    mcancel = maint_sub.add_parser("cancel", parents=[common],
                                   help="cancel a window (kept in the audit trail)")
    mcancel.add_argument("id", type=int)
    mcancel.add_argument("--by", default="cli")
    mlist = maint_sub.add_parser("list", parents=[common], help="list windows")
    mlist.add_argument("--system")

    inc = sub.add_parser("incidents", help="list, show, acknowledge, recover, report, close")
    inc_sub = inc.add_subparsers(dest="action", required=True)
    ilist = inc_sub.add_parser("list", parents=[common], help="list incidents, newest first")
    ilist.add_argument("--state", choices=("open", "recovered", "closed"))
    ilist.add_argument("--level", type=int, choices=(1, 2, 3, 4))
    ilist.add_argument("--system")
    ishow = inc_sub.add_parser("show", parents=[common],
                               help="one incident with its timeline and overtimes")
    ishow.add_argument("id")
    for action, text in (("ack", "acknowledge (响应): sets responded_at once"),
                         ("recover", "mark the business restored"),
                         ("report", "record the filed report (报告)"),
                         ("close", "close a recovered incident")):
        act = inc_sub.add_parser(action, parents=[common], help=text)
        act.add_argument("id")
        act.add_argument("--by", required=True, help="who (kept in the timeline)")
        act.add_argument("--note", default="")
        if action == "report":
            act.add_argument("--ref", help="the report's document number or link")

    adv = sub.add_parser("advisories",
                         help="offline advisory bundles (CISA KEV, version rules, OSV)")
    adv_sub = adv.add_subparsers(dest="action", required=True)
    aimp = adv_sub.add_parser("import", parents=[common],
                              help="import a bundle carried in (no network is used)")
    aimp.add_argument("file", help="the bundle; for --kind osv a zip (osv.dev all.zip), a "
                      "directory of OSV JSON files or one JSON file")
    aimp.add_argument("--kind", required=True, choices=("kev", "rules", "osv"))
    aimp.add_argument("--source-date", default="",
                      help="when the source published it (KEV: read from the file; OSV: the "
                      "newest `modified` of its records)")
    aimp.add_argument("--source", default="", help="where it came from (default: the file)")
    aimp.add_argument("--by", default="cli", help="who imports it (kept with the bundle)")
    adv_sub.add_parser("list", parents=[common], help="bundles imported so far")

    audit = sub.add_parser("audit", help="the audit trails' hash chains")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    averify = audit_sub.add_parser(
        "verify", parents=[common],
        help="walk the audit log and the maintenance trail; exit 1 at the first broken row")
    averify.add_argument("--anchor", action="append", default=[], metavar="HASH",
                         help="a head hash exported earlier (signed report, external log) "
                         "that must still be in a chain (repeatable)")

    from collector.web.cli import add_users_parser
    add_users_parser(sub, common)

    report = sub.add_parser("report", parents=[common], help="write a report")
    report.add_argument("kind", choices=("availability", "incidents", "patches", "inspection",
                                         "annual"))
    report.add_argument("--from", dest="start", help="first day (local) or ISO time; "
                        "default: start of this year")
    report.add_argument("--to", dest="end", help="last day (included) or ISO time; default: now")
    report.add_argument("--system", action="append", help="only this system (repeatable)")
    report.add_argument("--format", choices=("html", "xlsx", "json", "csv"), default="json")
    report.add_argument("--lang", choices=("zh-CN", "en"),
                        help="report language (default: the config's `language`, zh-CN)")
    report.add_argument("-o", "--output", default="-", help="file to write; - for stdout")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.command == "demo":
        from collector.demo import run_demo

        return run_demo(Path(args.data_dir), args.port, args.agent_port)
    try:
        config = load_collector_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        return _command(args, config)
    except Exception as exc:
        reason = unavailable.cause(exc)   # short and secret-free: no URL, no password
        if reason is None:
            raise
        print(f"error: the store is unavailable: {reason}", file=sys.stderr)
        return 1


def _command(args: argparse.Namespace, config: CollectorConfig) -> int:
    if args.command == "run":
        return asyncio.run(serve(config))
    if args.command == "users":
        from collector.web.cli import run_users

        return run_users(args, config)
    if args.command == "report":
        from collector.reports.command import write_report

        try:
            return write_report(config, args.kind, start=args.start, end=args.end,
                                systems=args.system, fmt=args.format,
                                lang=args.lang or config.language, output=args.output)
        except (ValueError, StoreError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        if args.command == "incidents":
            return asyncio.run(_incidents(args, config))
        if args.command == "advisories":
            return asyncio.run(_advisories(args, config))
        if args.command == "audit":
            return asyncio.run(_audit(args, config))
        return asyncio.run(_admin(args, config))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _timestamp(value: str) -> datetime:
    """ISO 8601 with an offset; without one the value is refused (no guessing of zones)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} has no UTC offset; write e.g. 2026-05-01T08:00+08:00")
    return parsed


async def _admin(args: argparse.Namespace, config: CollectorConfig) -> int:
    store = await Store.open(config.store, synchronous=config.store_synchronous)
    try:
        now = utcnow()
        if args.command == "agents" and args.action == "add":
            token = await store.add_agent(args.id, now)
            print(token)
            print(f"agent {args.id} enrolled; this token is shown once: put it in the agent's "
                  "token_file (mode 0600)", file=sys.stderr)
        elif args.command == "agents" and args.action == "revoke":
            await store.revoke_agent(args.id, now)
            print(f"agent {args.id} revoked")
        elif args.command == "agents":
            for agent in await store.list_agents():
                print(json.dumps(_plain(agent), ensure_ascii=False))
        elif args.action == "add":
            if args.system not in {s.id for s in config.systems}:
                raise StoreError(f"unknown system {args.system!r}")
            window = await store.add_maintenance(
                system=args.system, start=args.start, end=args.end, kind=args.kind,
                reason=args.reason, approved_by=args.approved_by, by=args.by, now=now)
            print(json.dumps(_plain(window.__dict__), ensure_ascii=False))
        elif args.action == "cancel":
            window = await store.cancel_maintenance(args.id, by=args.by, now=now)
            print(json.dumps(_plain(window.__dict__), ensure_ascii=False))
        else:
            for window in await store.maintenance_windows(system=args.system):
                print(json.dumps(_plain(window.__dict__), ensure_ascii=False))
    finally:
        await store.close()
    return 0


async def _incidents(args: argparse.Namespace, config: CollectorConfig) -> int:
    from collector.calendar import HolidayCalendar
    from collector.incidents import IncidentService
    from collector.outbox import Outbox
    from collector.systems import Systems

    store = await Store.open(config.store, synchronous=config.store_synchronous)
    try:
        calendar = HolidayCalendar.load(config.calendar)
        service = IncidentService(config, store, Systems(config, store, calendar), calendar)
        # messages for people's actions are queued; the running collector sends them
        service.on_change = Outbox(config, store, service).on_change
        now = utcnow()
        if args.action == "list":
            for incident in await service.find(state=args.state, level=args.level,
                                               system=args.system):
                print(json.dumps(incident.as_dict(), ensure_ascii=False))
            return 0
        incident_id = _incident_number(args.id)
        if args.action == "show":
            shown = (await service.get(incident_id)).as_dict()
            shown["timeline"] = [_plain(e) for e in await service.timeline(incident_id)]
            shown["overtimes"] = [_plain(o) for o in
                                  await service.incident_overtimes(incident_id)]
            print(json.dumps(shown, ensure_ascii=False, indent=2))
            return 0
        if args.action == "ack":
            incident = await service.acknowledge(incident_id, args.by, args.note, now)
        elif args.action == "recover":
            incident = await service.recover(incident_id, args.by, args.note, now)
        elif args.action == "report":
            incident = await service.report(incident_id, args.by, args.note, args.ref, now)
        else:
            incident = await service.close(incident_id, args.by, args.note, now)
        print(json.dumps(incident.as_dict(), ensure_ascii=False))
        return 0
    finally:
        await store.close()


async def _advisories(args: argparse.Namespace, config: CollectorConfig) -> int:
    from collector.advisories import Advisories

    store = await Store.open(config.store, synchronous=config.store_synchronous)
    try:
        advisories = Advisories(store)
        if args.action == "list":
            for bundle in await advisories.bundles():
                print(json.dumps(_plain(bundle), ensure_ascii=False))
            return 0
        if args.kind == "osv":
            return await _import_osv(args, store)
        try:
            data = await asyncio.to_thread(Path(args.file).read_bytes)
        except OSError as exc:
            raise StoreError(f"cannot read {args.file}: {exc.strerror}") from None
        imported = await advisories.import_bundle(
            args.kind, data, source=args.source or Path(args.file).name,
            source_date=args.source_date, by=args.by, now=utcnow())
        print(json.dumps(imported, ensure_ascii=False))
        if not imported["new"]:
            print("this bundle was imported before; nothing changed", file=sys.stderr)
        return 0
    finally:
        await store.close()


async def _audit(args: argparse.Namespace, config: CollectorConfig) -> int:
    """`audit verify`: OK with row counts and head hashes, or the first broken row."""
    from collector.auditchain import verify_all

    store = await Store.open(config.store, synchronous=config.store_synchronous)
    try:
        reports, missing = await verify_all(store.engine, args.anchor)
    finally:
        await store.close()
    for report in reports:
        print(report.line())
    for anchor in missing:
        print(f"anchor {anchor}: not in any chain (newest rows deleted, or a chain "
              "rewritten)")
    return 0 if all(r.ok for r in reports) and not missing else 1


async def _import_osv(args: argparse.Namespace, store: Store) -> int:
    """Import an OSV bundle, then match every host's newest inventory against it."""
    from collector.findings import FindingsService

    service = FindingsService(store)
    path = Path(args.file)
    imported = await service.osv.import_path(
        path, source=args.source or path.name, source_date=args.source_date, by=args.by,
        now=utcnow())
    imported["findings_opened"] = await service.match_osv()
    print(json.dumps(imported, ensure_ascii=False))
    if not imported["new"]:
        print("this bundle was imported before; nothing changed", file=sys.stderr)
    return 0


def _incident_number(value: str) -> int:
    number = value.rsplit("-", 1)[-1] if value.upper().startswith("INC-") else value
    try:
        return int(number)
    except ValueError:
        raise StoreError(f"{value!r} is not an incident id (a number or INC-YYYY-NNNN)") from None


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.items()}


async def serve(config: CollectorConfig, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> int:
    notifier = Notifier.from_environ()   # systemd Type=notify; a no-op elsewhere
    app = create_app(config)
    host, port = _host_port(config.listen)
    ssl_context = None
    if config.tls is not None:
        ssl_context = await asyncio.to_thread(server_context, config.tls)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.listen, exc.strerror or exc)
        notifier.notify(f"STATUS=cannot listen on {config.listen}")
        await runner.cleanup()
        return 1
    scheme = "https" if ssl_context else "http"
    log.info("collector serving on %s://%s", scheme, config.listen)
    if config.tls is not None and config.tls.client_ca_file is not None:
        log.info("ingest needs agents' client certificates (%s at the TLS handshake)",
                 config.tls.client_certs)
    if stop is None:  # standalone: signals stop it; embedded (demo): the caller does
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    # the store is migrated and the API answers: what READY=1 promises (docs/deploy.md)
    notifier.ready(f"serving on {scheme}://{config.listen}")
    watchdog = asyncio.create_task(notifier.run_watchdog(), name="sd-watchdog")
    await stop.wait()
    log.info("shutting down")
    notifier.stopping()
    try:
        await runner.cleanup()
    finally:
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
    return 0


def _host_port(listen: str) -> tuple[str, int]:
    from probes.config import split_listen

    return split_listen(listen)


if __name__ == "__main__":
    sys.exit(main())
