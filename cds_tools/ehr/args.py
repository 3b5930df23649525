"""The arguments of ``cds-fasciculation ehr ...`` and ``cds-fasciculation conformance``.

Option groups are shared, so the same flag means the same thing everywhere (signing, FHIR server,
hook context, prefetch shape). This module imports nothing heavy: the main parser is built for
every command (the container's ``healthcheck`` too), so the handlers in ``cli`` (httpx, PyJWT,
cryptography) are imported only when an ``ehr``/``conformance`` command actually runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cds_tools.ehr import defaults as d


def signing_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("client JWT (CDS Hooks 'Trusting CDS Clients')")
    g.add_argument("--sign", choices=d.ALGORITHMS, help="sign every request with a JWT of this algorithm")
    g.add_argument(
        "--key-dir", type=Path, help="directory holding the private key (created with a new key if empty)"
    )
    g.add_argument("--iss", default=d.DEFAULT_ISS, help=f"iss claim (default {d.DEFAULT_ISS})")
    g.add_argument("--tenant", help="tenant claim")
    g.add_argument(
        "--jwks-port",
        type=int,
        default=d.DEFAULT_JWKS_PORT,
        help="loopback port serving the JWK Set during the run (8111)",
    )
    g.add_argument("--jku", help="jku header pointing elsewhere (then no JWK Set is served here)")
    g.add_argument(
        "--no-jku", action="store_true", help="send no jku header (the service knows the keys out of band)"
    )


def fhir_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    g = p.add_argument_group("FHIR server (where the simulated EHR reads its data)")
    g.add_argument("--fhir", required=required, help="FHIR base URL, e.g. http://127.0.0.1:8090/fhir")
    g.add_argument("--fhir-token", help="bearer token for the FHIR server")
    g.add_argument(
        "--search",
        choices=("get", "post"),
        default="get",
        help="searches as GET, or POST _search like the Sandbox",
    )


def context_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hook and context")
    g.add_argument("--service", required=True, help="service id (as listed by discovery)")
    g.add_argument(
        "--hook", default="patient-view", help="patient-view (default), order-select or order-sign"
    )
    g.add_argument("--patient", required=True, help="context.patientId")
    g.add_argument("--user", default=d.DEFAULT_USER, help=f"context.userId (default {d.DEFAULT_USER})")
    g.add_argument("--encounter", help="context.encounterId")
    g.add_argument(
        "--drafts", type=Path, help="order hooks: draft orders (a Bundle or a JSON list of resources)"
    )
    g.add_argument("--selections", nargs="+", help="order-select: selected Type/id (default: every draft)")


def prefetch_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("prefetch (default: every template resolved against --fhir)")
    g.add_argument(
        "--prefetch", choices=("full", "none"), default="full", help="none: send no prefetch member"
    )
    g.add_argument(
        "--prefetch-file", type=Path, help="take the prefetch values from this JSON object instead of --fhir"
    )
    g.add_argument("--only", nargs="+", default=[], metavar="KEY", help="partial prefetch: only these keys")
    g.add_argument("--omit", nargs="+", default=[], metavar="KEY", help="leave these keys out")
    g.add_argument("--null", nargs="+", default=[], metavar="KEY", help="send these keys as null (no data)")
    g.add_argument(
        "--outcome", nargs="+", default=[], metavar="KEY", help="send an OperationOutcome for these keys"
    )
    a = p.add_argument_group("fhirServer and fhirAuthorization in the request")
    a.add_argument("--no-fhir-server", action="store_true", help="leave fhirServer out of the request")
    a.add_argument(
        "--fhir-authorization",
        action="store_true",
        help="hand --fhir-token to the service as fhirAuthorization",
    )
    a.add_argument("--scope", default="patient/*.read", help="fhirAuthorization.scope (patient/*.read)")
    a.add_argument(
        "--subject", default="cds-service", help="fhirAuthorization.subject (the service's client id)"
    )
    a.add_argument("--expires-in", type=int, default=300, help="fhirAuthorization.expires_in (300)")


def _lazy(name: str) -> Any:
    """A handler that imports ``cds_tools.ehr.cli`` when (and only when) its command runs."""

    def run(args: argparse.Namespace) -> int:
        from cds_tools.ehr import cli

        result: int = cli.guarded(getattr(cli, name))(args)
        return result

    return run


def add_parsers(sub: Any) -> None:
    """Add ``ehr`` and ``conformance`` to the main parser's subcommands."""
    ehr = sub.add_parser("ehr", help="EHR simulator: a CDS Hooks client for any CDS service")
    cmds = ehr.add_subparsers(dest="ehr_command", required=True)

    p = cmds.add_parser("load", help="load patient Bundles (files or fixture names) into a FHIR server")
    p.add_argument("bundle", nargs="+", help="Bundle file, or a fixture name such as r01-weakness")
    p.add_argument("--fhir", required=True, help="FHIR base URL")
    p.add_argument("--fhir-token", help="bearer token for the FHIR server")
    p.add_argument(
        "--shift-dates", action=argparse.BooleanOptionalAction, default=None, help="default: fixtures only"
    )
    p.set_defaults(func=_lazy("cmd_load"))

    p = cmds.add_parser("discover", help="read and print a service's discovery document")
    p.add_argument("url", help="base or discovery URL, e.g. http://127.0.0.1:8100/cds-services")
    p.add_argument("--json", action="store_true", help="print the JSON as received")
    signing_args(p)
    p.set_defaults(func=_lazy("cmd_discover"))

    for name, func, text in (
        ("call", "cmd_call", "send a hook call and print the cards"),
        ("prefetch", "cmd_prefetch", "resolve a service's prefetch templates and print the prefetch JSON"),
    ):
        p = cmds.add_parser(name, help=text)
        p.add_argument("url", help="base or discovery URL of the CDS server")
        context_args(p)
        fhir_args(p)
        prefetch_args(p)
        signing_args(p)
        if name == "call":
            p.add_argument("--save", type=Path, help="save the response JSON (for 'ehr feedback')")
            p.add_argument("--json", action="store_true", help="print the response JSON instead of text")
            p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
        p.set_defaults(func=_lazy(func))

    p = cmds.add_parser("feedback", help="send feedback on a card of a saved response")
    p.add_argument("url", help="base or discovery URL of the CDS server")
    p.add_argument("--service", required=True)
    p.add_argument("--response", type=Path, required=True, help="response saved by 'ehr call --save'")
    p.add_argument("--card", required=True, help="card number as printed (1, 2...) or its uuid")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--accept",
        nargs="+",
        metavar="SUGGESTION",
        help="accept suggestions (number within the card or uuid)",
    )
    what.add_argument(
        "--override", metavar="REASON", help="override with a reason code from the card's overrideReasons"
    )
    what.add_argument(
        "--dismiss", action="store_true", help="override without a reason (the Sandbox's Dismiss)"
    )
    p.add_argument("--comment", help="overrideReason.userComment")
    signing_args(p)
    p.set_defaults(func=_lazy("cmd_feedback"))

    for name, func, text in (
        ("keys", "cmd_keys", "create or show the signing key and print the service's trusted-issuer entry"),
        ("jwks", "cmd_jwks", "serve the JWK Set on loopback until stopped"),
    ):
        p = cmds.add_parser(name, help=text)
        p.add_argument("--key-dir", type=Path, required=True)
        p.add_argument("--alg", choices=d.ALGORITHMS, default="ES384")
        if name == "keys":
            p.add_argument("--iss", default=d.DEFAULT_ISS)
            p.add_argument("--jwks-port", type=int, default=d.DEFAULT_JWKS_PORT)
            p.add_argument("--no-jku", action="store_true", help="issuer entry without jku")
            p.add_argument(
                "--write-jwks", type=Path, help="also write the public JWK Set here (entry uses jwks_file)"
            )
            p.add_argument(
                "--issuer-json", action="store_true", help="print only the CDS_TRUSTED_ISSUERS JSON"
            )
        else:
            p.add_argument("--port", type=int, default=d.DEFAULT_JWKS_PORT)
        p.set_defaults(func=_lazy(func))

    p = sub.add_parser("conformance", help="check any CDS Hooks service against the CDS Hooks 2.0 checklist")
    p.add_argument("url", help="base or discovery URL of the CDS server")
    p.add_argument("--service", help="check only this service id (default: every discovered service)")
    p.add_argument("--patient", action="append", help="patient id in --fhir (repeat for several)")
    p.add_argument("--user", default=d.DEFAULT_USER)
    p.add_argument(
        "--drafts", type=Path, help="draft orders for order hooks (default: one plain MedicationRequest)"
    )
    p.add_argument("--fhir-authorization", action="store_true", help="hand --fhir-token to the service")
    p.add_argument(
        "--auth-required", action="store_true", help="the service requires client JWTs: check refusals"
    )
    p.add_argument("--origin", default=d.SANDBOX_LIKE_ORIGIN, help="Origin for the CORS checks")
    p.add_argument("--strict", action="store_true", help="warnings (SHOULD and recommendations) fail too")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    fhir_args(p)
    signing_args(p)
    p.set_defaults(func=_lazy("cmd_conformance"))
