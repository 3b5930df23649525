"""Command line: ``cds-fasciculation serve|migrate ...`` (also ``python -m cds_service``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cds_service.settings import get_settings

    if args.host:
        os.environ["CDS_HOST"] = args.host
    if args.port:
        os.environ["CDS_PORT"] = str(args.port)
    if args.workers:
        os.environ["CDS_WORKERS"] = str(args.workers)
    get_settings.cache_clear()
    settings = get_settings()
    uvicorn.run(
        "cds_service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
        server_header=False,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from cds_service.settings import get_settings
    from cds_service.storage.db import downgrade, upgrade

    url = get_settings().db_url
    if args.direction == "up":
        upgrade(url, args.revision or "head")
    else:
        downgrade(url, args.revision or "-1")
    print(f"migrated {args.direction} to {args.revision or ('head' if args.direction == 'up' else '-1')}")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
