"""The handlers of ``cds-fasciculation ehr ...`` (the EHR simulator) and ``cds-fasciculation
conformance``; their arguments are defined in ``args`` and each handler is imported only when
its command runs.

Exit codes: 0 done (for ``call``: the service answered 200), 1 the service answered otherwise
or a conformance rule failed, 2 a usage or connection error. Cards and reports go to stdout;
what the simulator did (prefetch per key, JWKS URL) goes to stderr, so ``--json`` output can be
piped. No token (client JWT or FHIR access token) is ever printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from cds_service.protocol.validate import response_problems
from cds_tools.ehr import client as cl
from cds_tools.ehr import fhir, render, signing
from cds_tools.ehr.prefetch import Fetched, FhirReader, Plan, resolve, shape


class UsageError(Exception):
    """Bad arguments or inputs: reported on stderr with exit code 2."""


class Refused(Exception):
    """The service answered, but not with what the command needs: stderr, exit code 1."""


def _err(text: str) -> None:
    print(text, file=sys.stderr)


@contextlib.contextmanager
def _signer(args: argparse.Namespace) -> Iterator[signing.Signer | None]:
    """The signer for this run, with its JWK Set served on loopback while the command runs."""
    if not getattr(args, "sign", None):
        yield None
        return
    if args.key_dir is None:
        raise UsageError("--sign needs --key-dir DIR (where the private key is kept)")
    key = _key(args.key_dir, args.sign)
    if args.jku:
        yield signing.Signer(key, args.iss, None if args.no_jku else args.jku, args.tenant)
        return
    with signing.serving_jwks(key, args.jwks_port) as jku:
        _err(f"JWK Set (kid {key.kid}) served at {jku}")
        yield signing.Signer(key, args.iss, None if args.no_jku else jku, args.tenant)


def _key(directory: Path, alg: str) -> signing.ClientKey:
    try:
        return signing.load_or_create(directory, alg)
    except (OSError, ValueError) as exc:
        raise UsageError(f"signing key in {directory}: {exc}") from None


def _drafts(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        return cl.load_drafts(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"drafts {path}: {exc}") from None


def _read_object(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- ehr subcommands


def cmd_load(args: argparse.Namespace) -> int:
    with cl.http_client(60) as http:
        for ref in args.bundle:
            try:
                loaded = fhir.read_bundle(ref, args.shift_dates)
            except (OSError, ValueError) as exc:
                raise UsageError(str(exc)) from None
            result = fhir.post_transaction(args.fhir, loaded.bundle, http, args.fhir_token)
            shifted = ", dates shifted to today" if loaded.shifted else ""
            print(
                f"{loaded.source.name}: {result.entries} resources -> {args.fhir}; patient {loaded.patient_id}{shifted}"
            )
            for failure in result.failed:
                _err(f"  failed: {failure}")
            if result.failed:
                return 1
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    with cl.http_client() as http, _signer(args) as signer:
        resp = cl.CdsClient(args.url, http, signer).discover()
    if resp.status_code != 200:
        _err(f"discovery: HTTP {resp.status_code}: {resp.text[:500]}")
        return 1
    print(json.dumps(resp.json(), indent=2) if args.json else render.format_discovery(resp.json()))
    return 0


def _service(client: cl.CdsClient, service_id: str, hook: str) -> dict[str, Any]:
    resp = client.discover()
    if resp.status_code != 200:
        raise Refused(f"discovery {client.discovery_url}: HTTP {resp.status_code}")
    for s in resp.json().get("services") or []:
        if s.get("id") == service_id and s.get("hook") == hook:
            found: dict[str, Any] = s
            return found
    raise UsageError(f"discovery lists no service {service_id!r} for hook {hook!r}")


def _plan(args: argparse.Namespace) -> Plan:
    return Plan(
        send=args.prefetch != "none",
        only=frozenset(args.only) if args.only else None,
        omit=frozenset(args.omit),
        null=frozenset(args.null),
        outcome=frozenset(args.outcome),
    )


def _build(
    args: argparse.Namespace, svc: dict[str, Any], http: httpx.Client
) -> tuple[dict[str, Any], list[Fetched]]:
    """The hook request the simulated EHR sends, and what it read for the prefetch."""
    drafts = _drafts(args.drafts)
    if args.hook in cl.ORDER_HOOKS and drafts is None:
        raise UsageError(f"{args.hook} needs --drafts FILE (a Bundle or a JSON list of draft orders)")
    ctx = cl.hook_context(args.hook, args.patient, args.user, args.encounter, drafts, args.selections)
    templates: dict[str, str] = svc.get("prefetch") or {}
    plan = _plan(args)
    try:
        plan.check(templates)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not plan.send:
        fetched = [Fetched(k, None, None, "not fetched") for k in templates]
    elif args.prefetch_file:
        given = _read_object(args.prefetch_file)
        fetched = [
            Fetched(k, "file", given[k], "from file") if k in given else Fetched(k, None, None, "not in file")
            for k in templates
        ]
    elif args.fhir:
        fetched = resolve(templates, ctx, FhirReader(args.fhir, http, args.fhir_token, args.search))
    else:
        fetched = resolve(templates, ctx, None)  # no FHIR server: a patient without any data
    auth = None
    if args.fhir_authorization:
        if not args.fhir_token:
            raise UsageError("--fhir-authorization needs --fhir-token (the token handed to the service)")
        auth = cl.fhir_authorization(args.fhir_token, args.patient, args.scope, args.subject, args.expires_in)
    server = None if args.no_fhir_server else args.fhir
    if auth and not server:
        raise UsageError(
            "fhirAuthorization needs fhirServer (spec cds-r-1): give --fhir, drop --no-fhir-server"
        )
    return cl.hook_request(args.hook, ctx, shape(fetched, plan), server, auth), fetched


def cmd_prefetch(args: argparse.Namespace) -> int:
    with cl.http_client() as http, _signer(args) as signer:
        svc = _service(cl.CdsClient(args.url, http, signer), args.service, args.hook)
        body, _ = _build(args, svc, http)
    print(json.dumps(body.get("prefetch"), indent=2))
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    with cl.http_client() as http, _signer(args) as signer:
        client = cl.CdsClient(args.url, http, signer)
        svc = _service(client, args.service, args.hook)
        body, fetched = _build(args, svc, http)
        _err(render.format_prefetch(fetched, body.get("prefetch")))
        resp = client.call(args.service, body)
    if resp.status_code != 200:
        _err(f"{client.service_url(args.service)}: HTTP {resp.status_code}")
        _err(resp.text[:2000])
        return 1
    try:
        answer = resp.json()
    except ValueError:
        raise Refused(f"{client.service_url(args.service)}: 200 without a JSON body") from None
    if not isinstance(answer, dict):
        raise Refused(f"{client.service_url(args.service)}: the answer is not a JSON object")
    if args.save:
        args.save.write_text(json.dumps(answer, indent=2))
        _err(f"response saved to {args.save}")
    for problem in response_problems(answer):
        _err(f"warning: response breaks the spec: {problem}")
    print(
        json.dumps(answer, indent=2)
        if args.json
        else render.format_response(answer, render.use_colour(args.color))
    )
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    answer = _read_object(args.response)
    try:
        card = cl.pick_card(answer.get("cards") or [], args.card)
        if args.accept:
            item = cl.accepted(card, [cl.pick_suggestion(card, s) for s in args.accept])
        elif args.override:
            item = cl.overridden(card, cl.pick_reason(card, args.override), args.comment)
        else:
            item = cl.overridden(card, None, args.comment)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with cl.http_client() as http, _signer(args) as signer:
        resp = cl.CdsClient(args.url, http, signer).feedback(args.service, {"feedback": [item]})
    detail = (
        f" {item['overrideReason']['reason']['code']}" if "reason" in item.get("overrideReason", {}) else ""
    )
    print(f"feedback {item['outcome']}{detail} on card {item['card']}: HTTP {resp.status_code}")
    return 0 if 200 <= resp.status_code < 300 else 1


def cmd_keys(args: argparse.Namespace) -> int:
    key = _key(args.key_dir, args.alg)
    jku = None if args.no_jku else signing.jku_for_port(args.jwks_port)
    if args.write_jwks:
        args.write_jwks.write_text(json.dumps(key.jwks(), indent=2))
    entry = signing.issuer_config(key, args.iss, jku, args.write_jwks.resolve() if args.write_jwks else None)
    if args.issuer_json:
        print(json.dumps([entry]))
        return 0
    print(f"{key.alg} key, kid {key.kid}, in {args.key_dir}")
    if jku:
        print(f"jku: {jku} (served by 'ehr jwks', or by 'ehr call --sign' while it runs)")
    print(f"to trust this simulator, start the service with\n  CDS_TRUSTED_ISSUERS='{json.dumps([entry])}'")
    return 0


def cmd_jwks(args: argparse.Namespace) -> int:
    key = _key(args.key_dir, args.alg)
    server = signing.JwksServer(key.jwks(), args.port).start()
    print(f"serving the JWK Set (kid {key.kid}) at {server.url}; Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    from cds_tools.ehr.conformance import Checker, Options, UnknownService

    drafts = _drafts(args.drafts)
    opts = Options(
        base_url=args.url,
        service=args.service,
        fhir=args.fhir,
        patients=tuple(args.patient or ()),
        user=args.user,
        fhir_token=args.fhir_token,
        send_fhir_authorization=args.fhir_authorization,
        search=args.search,
        drafts=drafts,
        auth_required=args.auth_required,
        origin=args.origin,
    )
    if opts.send_fhir_authorization and not opts.fhir_token:
        raise UsageError("--fhir-authorization needs --fhir-token")
    with cl.http_client() as http, _signer(args) as signer:
        try:
            report = Checker(opts, http, signer).run()
        except UnknownService as exc:
            raise UsageError(str(exc)) from None
    print(json.dumps(report.as_json(), indent=2) if args.json else report.format_text())
    return report.exit_code(args.strict)


# --------------------------------------------------------------------------- wiring


def guarded(func: Any) -> Any:
    """Usage and connection errors become a message and exit code 2 (no traceback)."""

    def run(args: argparse.Namespace) -> int:
        try:
            result: int = func(args)
            return result
        except UsageError as exc:
            _err(f"error: {exc}")
            return 2
        except Refused as exc:
            _err(f"error: {exc}")
            return 1
        except httpx.HTTPError as exc:
            _err(f"error: {type(exc).__name__}: {exc}")
            return 2

    return run
