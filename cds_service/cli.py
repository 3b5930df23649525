"""Command line: ``cds-fasciculation serve|migrate|report|healthcheck ...`` (also ``python -m cds_service``)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from cds_service import serving
    from cds_service.settings import get_settings

    if args.host:
        os.environ["CDS_HOST"] = args.host
    if args.port:
        os.environ["CDS_PORT"] = str(args.port)
    if args.workers:
        os.environ["CDS_WORKERS"] = str(args.workers)
    get_settings.cache_clear()
    from cds_service.startup import problems_of, refuse

    try:  # a refused start is one line per problem and exit 2, never a traceback
        settings = get_settings()
    except Exception as exc:
        return refuse(problems_of(exc))
    single = settings.workers == 1  # one process: run the app built here; workers build their own
    if single:  # this process serves: its metrics directory must be ready before the app exists
        _prepare_metrics(settings.workers, settings.metrics_enabled)
    from cds_service.http.app import create_app

    try:  # build it here, so an unsafe or broken configuration is refused before uvicorn runs
        app = create_app(settings)
    except Exception as exc:
        return refuse(problems_of(exc))
    if not single:  # the supervisor only checked the app: the cleanup drops its own metric files
        _prepare_metrics(settings.workers, settings.metrics_enabled)
        if settings.migrate_on_start:
            # Once, here, before any worker starts: workers migrating at start raced each other on
            # one database, and a worker restarted by the supervisor migrated again while the
            # others served (a failed start there stops the whole service).
            from cds_service.storage.db import upgrade

            upgrade(settings.db_url)
            os.environ["CDS_AUTO_MIGRATE"] = "false"
    if settings.metrics_enabled and settings.metrics_port is not None:
        _serve_metrics_port(settings.host, settings.metrics_port)
    serving.run(  # uvicorn, but SIGTERM refuses new connections at once (serving.py)
        app if single else "cds_service.http.app:create_app",
        factory=not single,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        server_header=False,
        http="cds_service.trust.edges:EdgeHttpProtocol",  # header limits and timeout (issue 16)
    )
    return 0


def _prepare_metrics(workers: int, enabled: bool) -> None:
    """Multi-worker metrics: every worker is a process of its own, so prometheus_client must write
    to shared files. The directory must be set before any worker imports prometheus_client and must
    start empty (stale files would resurrect old counts); an operator may choose it with
    ``PROMETHEUS_MULTIPROC_DIR``, otherwise a fresh one is made under TMPDIR."""
    if not enabled or (workers <= 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR")):
        return
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="cds-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _serve_metrics_port(host: str, port: int) -> None:
    """/metrics on a port of its own, served by this (supervisor) process for all workers, so it
    can stay off the ingress while the service port is published."""
    from prometheus_client import start_http_server

    from cds_service.ops.metrics import collecting_registry

    start_http_server(port, addr=host, registry=collecting_registry())


def _report(args: argparse.Namespace) -> int:
    import asyncio
    import json
    from datetime import UTC, datetime, timedelta

    from cds_service.settings import get_settings
    from cds_service.storage.analytics import feedback_report, format_text
    from cds_service.storage.db import make_engine
    from cds_service.storage.repo import parse_timestamp

    until = parse_timestamp(args.until) if args.until else datetime.now(UTC)
    since = parse_timestamp(args.since) if args.since else until - timedelta(days=args.days)
    if since >= until:
        print("--since must be before --until", file=sys.stderr)
        return 2

    async def run() -> str:
        engine = make_engine(get_settings().db_url)
        try:
            report = await feedback_report(engine, since, until, args.top)
        finally:
            await engine.dispose()
        return json.dumps(report.as_json(), indent=2) if args.json else format_text(report)

    print(asyncio.run(run()))
    return 0


def _healthcheck(args: argparse.Namespace) -> int:
    """For the image's HEALTHCHECK: stdlib only and no settings validation, so it is cheap and
    cannot fail for a reason other than the server not answering."""
    import urllib.request

    port = os.environ.get("CDS_PORT", "8100")
    url = f"http://127.0.0.1:{port}/{'readyz' if args.ready else 'healthz'}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


# One advisory lock id for this service's schema ("CDSF"); any constant works if unique per database.
MIGRATION_LOCK_ID = 0x43445346


async def _holding_migration_lock(url: str, work: Callable[[], None]) -> None:
    """Run ``work`` while holding a Postgres session advisory lock. Replicas that start together
    (Kubernetes init containers) each run ``migrate up``; without the lock they would race on the
    same DDL and all but one fail. With it the others wait, then find the schema at head."""
    import asyncio

    from sqlalchemy import text

    from cds_service.storage.db import make_engine

    engine = make_engine(url, statement_timeout=None)  # waiting for another replica's migration is fine
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            try:
                await asyncio.to_thread(work)  # Alembic runs its own event loop in that thread
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
    finally:
        await engine.dispose()


def _migrate(args: argparse.Namespace) -> int:
    import asyncio

    from cds_service.settings import get_settings
    from cds_service.storage.db import downgrade, upgrade

    url = get_settings().db_url

    def work() -> None:
        if args.direction == "up":
            upgrade(url, args.revision or "head")
        else:
            downgrade(url, args.revision or "-1")

    if url.startswith("postgresql"):
        asyncio.run(_holding_migration_lock(url, work))
    else:
        work()
    print(f"migrated {args.direction} to {args.revision or ('head' if args.direction == 'up' else '-1')}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from cds_service.clinical.review import evaluate_bundle, format_cards
    from cds_service.protocol.models import CdsResponse, dump

    if not args.bundle.is_file():
        print(f"no such file: {args.bundle}", file=sys.stderr)
        return 2
    if args.html:
        return _evaluate_html(args)
    try:
        cards = evaluate_bundle(
            args.bundle, args.hook, budget=args.budget, as_fixture=args.fixture, user_ref=args.user
        )
    except (ValueError, KeyError) as exc:
        print(f"cannot evaluate {args.bundle}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(dump(CdsResponse(cards=[c for _, c in cards])), indent=2))
    else:
        print(format_cards(cards))
    return 0


def _evaluate_html(args: argparse.Namespace) -> int:
    """The SMART app's page for the Bundle, written to a file (docs/smart-app.md)."""
    import json

    from cds_service.settings import Settings
    from cds_service.smart.offline import bundle_page

    try:
        if args.fixture:
            from cds_tools.fixtures import load

            bundle: object = load(args.bundle).bundle
        else:
            bundle = json.loads(args.bundle.read_text())
        html, count = bundle_page(bundle, args.bundle.name, Settings())
    except (ValueError, KeyError, LookupError) as exc:
        print(f"cannot evaluate {args.bundle}: {exc}", file=sys.stderr)
        return 2
    args.html.write_text(html)
    print(f"wrote {args.html} ({count} card(s))")
    return 0


def _burden(args: argparse.Namespace) -> int:
    from cds_service.burden.cli import run

    return run(args)


def _rules_doc(args: argparse.Namespace) -> int:
    from cds_service.clinical.review import DOC_PATH, rules_markdown, write_rules_doc

    if args.check:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != rules_markdown():
            print(f"{DOC_PATH} is out of date: run cds-fasciculation rules-doc --write", file=sys.stderr)
            return 1
        return 0
    if args.write:
        print(f"{DOC_PATH}: {'updated' if write_rules_doc() else 'already current'}")
        return 0
    print(rules_markdown(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds-fasciculation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service (settings from CDS_* environment)")
    serve.add_argument("--host", help="bind address (CDS_HOST)")
    serve.add_argument("--port", type=int, help="port (CDS_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (CDS_WORKERS)")
    serve.set_defaults(func=_serve)
    mig = sub.add_parser("migrate", help="apply or revert database migrations")
    mig.add_argument("direction", choices=["up", "down"])
    mig.add_argument("revision", nargs="?", help="target revision (default: head / one step down)")
    mig.set_defaults(func=_migrate)
    rep = sub.add_parser("report", help="feedback analytics per service and rule for a time window")
    rep.add_argument(
        "--since", help="start (RFC 3339 timestamp or YYYY-MM-DD; default: --days before --until)"
    )
    rep.add_argument("--until", help="end, exclusive (default: now)")
    rep.add_argument("--days", type=int, default=30, help="window length when --since is not given (30)")
    rep.add_argument("--top", type=int, default=5, help="override reasons listed per rule (5)")
    rep.add_argument("--json", action="store_true", help="print JSON (as GET /analytics/feedback does)")
    rep.set_defaults(func=_report)
    hc = sub.add_parser("healthcheck", help="exit 0 when the local server answers /healthz (or /readyz)")
    hc.add_argument("--ready", action="store_true", help="check /readyz instead of /healthz")
    hc.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for the answer")
    hc.set_defaults(func=_healthcheck)
    from cds_service.clinical.moments import HOOK_MOMENTS  # the hooks the topic serves (a light module)
    from cds_service.protocol.models import Hook

    ev = sub.add_parser(
        "evaluate", help="run a FHIR Bundle file offline and print the cards (clinical review)"
    )
    ev.add_argument("bundle", type=Path, help="FHIR Bundle JSON (any Bundle type)")
    ev.add_argument(
        "--hook",
        default=Hook.PATIENT_VIEW.value,
        choices=[h.value for h in HOOK_MOMENTS],
        help="hook to evaluate (default patient-view)",
    )
    ev.add_argument(
        "--budget", type=int, help="most cards shown (default: the service's, CDS_CARD_BUDGET, 4)"
    )
    ev.add_argument("--user", help="userId of the hook (Practitioner/x): requester of suggested orders")
    ev.add_argument("--json", action="store_true", help="print the CDS Hooks response JSON instead of text")
    ev.add_argument(
        "--fixture", action="store_true", help="a fixtures/patients file: shift its dates to today"
    )
    ev.add_argument(
        "--html", type=Path, metavar="FILE", help="write the SMART app's work-up page for the Bundle"
    )
    ev.set_defaults(func=_evaluate)
    from cds_service.burden.cli import add_arguments as add_burden_arguments  # issue 17, section 4

    burden = sub.add_parser("burden", help="alert-burden report over a population of Bundles or Bulk NDJSON")
    add_burden_arguments(burden)
    burden.set_defaults(func=_burden)
    doc = sub.add_parser(
        "rules-doc", help="generate docs/clinical-rules.md from the rules and card catalogue"
    )
    doc.add_argument("--write", action="store_true", help="write the file (default: print to stdout)")
    doc.add_argument("--check", action="store_true", help="exit 1 if the committed file is out of date")
    doc.set_defaults(func=_rules_doc)
    from cds_tools.ehr.args import add_parsers as add_ehr_parsers  # ehr ... and conformance (issue 7)

    add_ehr_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
