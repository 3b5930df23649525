"""``cds-fasciculation burden DIR [--inject-fasciculation]``: arguments and the command itself.

Import-light at parse time (the service is built in the workers); exit 2 for a usage error, 1 when
a target of issue 17 is missed and ``--fail-on-target`` asks for it (a go-live gate in CI), else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "population", type=Path, help="directory of FHIR Bundles (*.json) and/or Bulk NDJSON (*.ndjson)"
    )
    p.add_argument(
        "--inject-fasciculation",
        action="store_true",
        help="add an active fasciculation Condition as each patient's last resource (everyone in scope)",
    )
    p.add_argument(
        "--page-size",
        type=int,
        help="cut each prefetched search to this many entries plus a next link the run cannot follow "
        "(an EHR that sends page 1 only); default: whole searches",
    )
    p.add_argument("--hook", default="patient-view", help="hook to run (default patient-view)")
    p.add_argument("--workers", type=int, help="worker processes (default: CPU count, at most 8)")
    p.add_argument("--html", type=Path, default=Path("burden-report.html"), help="HTML report path")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    p.add_argument("--fail-on-target", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import io

    from cds_service.burden.report import html_report, text_report
    from cds_service.burden.run import Options, run_population, summarise
    from cds_service.clinical.settings import TopicSettings

    if not args.population.is_dir():
        print(f"not a directory: {args.population}", file=sys.stderr)
        return 2
    if args.page_size is not None and args.page_size < 1:
        print("--page-size must be at least 1", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    options = Options(inject=args.inject_fasciculation, page_size=args.page_size, hook=args.hook)
    progress_out = io.StringIO() if args.quiet else sys.stderr
    try:
        results = run_population(args.population, options, args.workers, out=progress_out)
    except ValueError as exc:
        print(f"cannot run the population: {exc}", file=sys.stderr)
        return 2
    if not results:
        print(f"no patients found under {args.population}", file=sys.stderr)
        return 2
    summary = summarise(results, options, TopicSettings().card_budget)
    print(text_report(summary))
    args.html.write_text(html_report(summary))
    print(f"\nHTML report: {args.html}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
        print(f"JSON figures: {args.json}")
    if args.fail_on_target and not all(t["met"] for t in summary["targets"]):
        return 1
    return 0
