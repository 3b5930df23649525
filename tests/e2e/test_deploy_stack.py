"""The hospital deployment run for real (issue 18): ``compose.yaml``, unchanged, started with the real
Docker Compose v2 CLI against podman's Docker-compatible API, on stand-in base images built here
from Debian packages (docs/deployment.md, "Compose without a Docker engine"); then the faults a
hospital's operations cause, each asserted on what the EHR sees and on the data.

Order matters (one stack per module, tests in file order): up and healthy; the demo profile with
the EHR simulator through the published port; Postgres restart; Redis restart; ``kill -9`` of the
service; SIGTERM with calls in flight; then two replicas behind HAProxy (token reuse across
replicas, a rolling restart under load). Each drill writes its figures to CDS_STACK_FIGURES
(default /tmp/cds-stack-figures.json) and prints them (``pytest -s``).

Two drills assert behaviour of the reliability work (docs/security.md): feedback answered 503
(not 500) while Postgres is down, and a replayed token still refused after Redis restarted empty
(the replay epoch).

Slow (several minutes; the first run on a machine also builds the images): marked ``container``
and ``stack``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from cds_service.clinical.services import SERVICE_IDS
from cds_tools import fixtures
from tests.support import stack as st
from tests.support.client import rule_of
from tests.support.ehr_cli import cds_cli, ok
from tests.support.servers import ROOT, free_port
from tests.support.trust_env import LocalIssuer

pytestmark = [pytest.mark.container, pytest.mark.stack, pytest.mark.e2e]

SERVICE = "fasciculation-workup"
HOOK_PATH = f"/cds-services/{SERVICE}"
FEEDBACK_PATH = f"{HOOK_PATH}/feedback"
TRUST = "/etc/cds/trust"
SIM_ISS = "https://ehr-simulator.stack.test"
GOLDEN_PATIENTS = ("r01-weakness", "r20-reassurance", "no-trigger")
ORDER_CASE = "r10-cyclobenzaprine-r4-sign"
REPLICAS = ROOT / "deploy/compose/replicas.yaml"
PODMAN_FIX = ROOT / "deploy/compose/podman/healthcheck-fix.yaml"


# --------------------------------------------------------------------------- the stack


@pytest.fixture(scope="module")
def drill_client() -> LocalIssuer:
    return LocalIssuer.create(iss="https://ehr.stack.test")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, drill_client: LocalIssuer) -> Iterator[st.Stack]:
    build = st.build_images()
    work = tmp_path_factory.mktemp("stack")
    trust = work / "trust"
    trust.mkdir()
    trust.joinpath("drill.json").write_text(drill_client.path.read_text())
    ok(cds_cli("ehr", "keys", "--key-dir", str(work / "sim-key"), "--iss", SIM_ISS, "--no-jku",
               "--write-jwks", str(trust / "ehr-simulator.json")))
    for f in (trust, *trust.iterdir()):
        f.chmod(0o755 if f.is_dir() else 0o644)  # read by the service's unprivileged user
    issuers = [
        {"iss": drill_client.iss, "jwks_file": f"{TRUST}/drill.json"},
        {"iss": SIM_ISS, "jwks_file": f"{TRUST}/ehr-simulator.json"},
    ]
    port, fhir_port, password = free_port(), free_port(), secrets.token_hex(12)
    (work / "cds.env").write_text(
        "\n".join(
            [
                f"POSTGRES_PASSWORD={password}",
                f"CDS_DATABASE_URL=postgresql+asyncpg://cds:{password}@postgres:5432/cds",
                "CDS_REDIS_URL=redis://redis:6379/0",
                f"CDS_PATIENT_HASH_KEY={secrets.token_hex(16)}",
                "CDS_WORKERS=2",
                f"CDS_PUBLIC_BASE_URL=http://127.0.0.1:{port}",
                f"CDS_TRUSTED_ISSUERS={json.dumps(issuers)}",
                "CDS_METRICS_PORT=9100",
                "CDS_ANALYTICS_ENABLED=false",
                "",
            ]
        )
    )
    # The test's own additions: the trusted clients' pinned keys (as a hospital mounts them) and
    # the demo FHIR server on a free port instead of 8080.
    mounts = {"volumes": [f"{trust}:{TRUST}:ro"]}
    (work / "drill.yaml").write_text(
        yaml.safe_dump({"services": {"cds": mounts, "fhir": {"ports": [f"127.0.0.1:{fhir_port}:8080"]}}})
        .replace("ports:\n", "ports: !override\n")
    )
    (work / "drill-replica.yaml").write_text(yaml.safe_dump({"services": {"cds-b": mounts}}))
    project = f"cds-stack-{uuid.uuid4().hex[:6]}"
    with st.engine(work / "engine") as docker_host:
        s = st.Stack(project, work, docker_host, port, fhir_port, [PODMAN_FIX, work / "drill.yaml"])
        try:
            services = ("postgres", "redis", "cds", "fhir")
            started, wall = time.monotonic(), time.time()
            with s.health_watch(services) as healthy_at:
                s.compose("up", "-d", "--no-build", "--pull", "never", timeout=900)
                up_returned = time.monotonic() - started
                s.wait_healthy("cds")
                s.wait_ready()
            figures: dict[str, Any] = {"compose_up_returned_s": round(up_returned, 1),
                                       "cds_readyz_200_s": round(healthy_at["readyz"] - wall, 1)}
            for service in services:  # seconds after `up` began
                figures[f"{service}_started_s"] = round(s.started_at(service) - wall, 1)
                figures[f"{service}_healthy_s"] = round(healthy_at[service] - wall, 1) if service in healthy_at else None
            st.record("build", build)
            st.record("up", figures)
            yield s
        finally:
            # With the replica files too (once), so cds-b and the proxy go as well.
            extra = tuple(f for f in (REPLICAS, work / "drill-replica.yaml") if f not in s.overrides)
            s.compose("down", "-v", "--remove-orphans", "-t", "35", extra=extra, timeout=300)


def hook_call(client: httpx.Client, stack: st.Stack, issuer: LocalIssuer, base: str | None = None) -> st.Call:
    """A patient-view call with a complete prefetch (fasciculation with weakness: critical card)."""
    patient = f"pt-{uuid.uuid4().hex[:8]}"
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient},
        "prefetch": prefetch_for(patient),
    }
    call = st.timed(client, "POST", (base or stack.base) + HOOK_PATH, json=body,
                    headers=issuer.headers(HOOK_PATH, aud=stack.base + HOOK_PATH))
    call.key = body["hookInstance"]  # the service's audit record of the call carries it
    return call


def prefetch_for(patient: str) -> dict[str, Any]:
    def condition(i: int, code: str) -> dict[str, Any]:
        return {"resource": {
            "resourceType": "Condition", "id": f"c{i}",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
            "subject": {"reference": f"Patient/{patient}"}}}

    keys = ("labs", "findings", "exams", "serviceRequests", "procedures", "reports", "medications", "endedMedications", "appointments")
    prefetch: dict[str, Any] = dict.fromkeys(keys)
    prefetch["patient"] = {"resourceType": "Patient", "id": patient, "birthDate": "1968-04-02", "gender": "male"}
    prefetch["conditions"] = {"resourceType": "Bundle", "type": "searchset",
                              "entry": [condition(1, "R25.3"), condition(2, "M62.81")]}
    return prefetch


def feedback_call(client: httpx.Client, stack: st.Stack, issuer: LocalIssuer) -> st.Call:
    card = st.new_card()
    call = st.timed(client, "POST", stack.base + FEEDBACK_PATH, json=st.feedback_body(card),
                    headers=issuer.headers(FEEDBACK_PATH, aud=stack.base + FEEDBACK_PATH))
    call.key = card
    return call


# --------------------------------------------------------------------------- up, demo, golden cards


def test_stack_comes_up_healthy(stack: st.Stack) -> None:
    for service in ("postgres", "redis", "cds"):
        assert stack.health(service) == "healthy", service
    assert stack.inspect("migrate", "{{.State.ExitCode}}") == "0"
    assert "migrated up to head" in stack.logs("migrate")
    assert httpx.get(stack.base + "/readyz").json() == {
        "status": "ok", "database": "up", "migrations": "current", "redis": "up"}
    # The stand-ins keep the official images' conventions the compose file relies on.
    assert stack.psql("select current_user, current_database()") == "cds|cds"
    assert stack.compose("exec", "-T", "redis", "redis-cli", "ping").strip() == "PONG"
    assert stack.inspect("cds", "{{.HostConfig.ReadonlyRootfs}}") == "true"
    assert stack.compose("exec", "-T", "cds", "id", "-u").strip() == "10001"
    assert httpx.get(stack.base + "/cds-services").status_code == 401  # production: client JWT required


def summarise_patient_view(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What fixtures/expected.yaml states of each card (as in tests/e2e/test_golden.py)."""
    out = []
    for card in body["cards"]:
        codes = []
        for s in card.get("suggestions", []):
            if len(s.get("actions", [])) != 1:
                continue
            code = s["actions"][0]["resource"]["code"]
            codes.append(f"{code['coding'][0]['system']}|{code['coding'][0]['code']}" if "coding" in code
                         else f"text:{code['text']}")
        out.append({"indicator": card["indicator"], "rule": rule_of(card), "suggests": codes})
    return out


def summarise_order(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What fixtures/order-cases.yaml states of each card (as in tests/e2e/test_order_hooks.py)."""
    out = []
    for card in body["cards"]:
        deletes, creates = [], []
        for s in card.get("suggestions", []):
            for a in s.get("actions", []):
                if a["type"] == "delete":
                    deletes.append(a["resourceId"])
                elif len(s["actions"]) == 1:
                    code = a["resource"]["code"]
                    creates.append(f"{code['coding'][0]['system']}|{code['coding'][0]['code']}")
        out.append({"rule": rule_of(card), "indicator": card["indicator"], "delete": deletes, "suggests": creates})
    return out


def simulator(stack: st.Stack, *args: str) -> list[str]:
    """Arguments every `ehr` command of the drills shares: sign with the simulator's pinned key."""
    return [*args, "--sign", "ES384", "--key-dir", str(stack.workdir / "sim-key"), "--iss", SIM_ISS, "--no-jku"]


def test_demo_profile_simulator_gets_golden_cards_and_feedback_lands(stack: st.Stack) -> None:
    seeded_s = stack.wait_exited("fhir-seed", timeout=300)
    st.record("demo", {"seed_done_after_tests_began_s": round(seeded_s, 1)})
    assert "demo patients loaded" in stack.logs("fhir-seed")
    assert stack.inspect("fhir-seed", "{{.State.ExitCode}}") == "0"
    fhir = f"http://127.0.0.1:{stack.fhir_port}/fhir"
    expected = fixtures.expectations()
    for name in GOLDEN_PATIENTS:
        fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
        out = ok(cds_cli(*simulator(stack, "ehr", "call", stack.base + "/cds-services", "--service", SERVICE,
                                    "--patient", fx.patient_id, "--fhir", fhir, "--no-fhir-server", "--json",
                                    "--save", str(stack.workdir / f"{name}.json"))))
        assert summarise_patient_view(json.loads(out)) == expected[name]["cards"], name

    case = next(c for c in yaml.safe_load((fixtures.ROOT / "order-cases.yaml").read_text()) if c["name"] == ORDER_CASE)
    drafts = stack.workdir / "drafts.json"
    drafts.write_text(json.dumps(case["drafts"]))
    patient = fixtures.load(fixtures.ROOT / "patients" / f"{case['patient']}.json").patient_id
    out = ok(cds_cli(*simulator(stack, "ehr", "call", stack.base + "/cds-services",
                                "--service", SERVICE_IDS[case["hook"]], "--hook", case["hook"], "--patient", patient, "--drafts", str(drafts),
                                "--fhir", fhir, "--no-fhir-server", "--json")))
    assert summarise_order(json.loads(out)) == case["expect"]

    saved = stack.workdir / "r01-weakness.json"
    card = json.loads(saved.read_text())["cards"][0]["uuid"]
    ok(cds_cli(*simulator(stack, "ehr", "feedback", stack.base + "/cds-services", "--service", SERVICE,
                          "--response", str(saved), "--card", "1", "--accept", "1")))
    uuid.UUID(card)  # a uuid, safe to put in the query text
    assert stack.psql(f"select outcome from feedback where card_uuid = '{card}'") == "accepted"  # noqa: S608
    logs = stack.logs("cds")
    assert "fx-r01-weakness" not in logs and "eyJ" not in logs  # no patient id or token in the logs


# --------------------------------------------------------------------------- fault drills


def test_drill_postgres_restart_during_feedback(stack: st.Stack, drill_client: LocalIssuer) -> None:
    """No feedback answered 200 is lost; calls during the outage get 503; readiness red, then green."""
    with st.ReadinessWatch(stack.base + "/readyz") as watch, \
            st.Load(lambda c: feedback_call(c, stack, drill_client), workers=3) as load:
        time.sleep(2)
        restart_at = time.monotonic()
        stack.compose("restart", "postgres", timeout=120)
        stack.wait_healthy("postgres", timeout=120)
        stack.wait_ready(timeout=120)
        watch.wait_green_again(timeout=120)  # wait_ready can return before the outage shows
        ready_again_s = time.monotonic() - restart_at
        time.sleep(2)
    calls = load.calls
    window = watch.red_window()
    ok_cards = [c.key for c in calls if c.status == 200]
    stored = set(stack.psql("select card_uuid from feedback").split())
    lost = [k for k in ok_cards if k not in stored]
    statuses = sorted({c.status for c in calls}, key=str)
    during = [c for c in calls if window and c.started >= window[0] - 1 and c.ended <= window[1] + 1]
    st.record("postgres_restart", {
        "calls": len(calls), "answered_200": len(ok_cards), "lost_200": len(lost),
        "status_counts": {str(s): sum(1 for c in calls if c.status == s) for s in statuses},
        "transport_errors": sum(1 for c in calls if c.status is None),
        "readiness_red_s": round(window[1] - window[0], 1) if window else None,
        "ready_again_after_restart_s": round(ready_again_s, 1),
    })
    assert not lost, f"{len(lost)} feedback items answered 200 are not in the database"
    assert window is not None and watch.green_again(), "readiness must go red during the outage, then green"
    assert during, "no feedback call fell in the outage window: the drill proved nothing"
    assert all(c.status is not None for c in calls), "the service itself stayed up: every call gets an answer"
    wrong = [c for c in calls if c.status not in (200, 503)]
    assert not wrong, f"statuses other than 200/503: {[c.status for c in wrong][:10]}"
    assert all(c.body and c.body.get("resourceType") == "OperationOutcome" for c in calls if c.status == 503)
    assert any(c.status == 503 for c in calls), "calls during the outage must get 503"


def test_drill_redis_restart_replay_still_refused(stack: st.Stack, drill_client: LocalIssuer) -> None:
    """A token used before Redis restarted (empty: no persistence) is still refused afterwards."""
    path = "/cds-services"
    token = drill_client.token(path, aud=stack.base + path)
    first = httpx.get(stack.base + path, headers={"Authorization": f"Bearer {token}"})
    assert first.status_code == 200
    assert httpx.get(stack.base + path, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    with st.ReadinessWatch(stack.base + "/readyz") as watch:
        restart_at = time.monotonic()
        stack.compose("restart", "redis", timeout=120)
        stack.wait_healthy("redis", timeout=120)
        stack.wait_ready(timeout=120)
        ready_s = time.monotonic() - restart_at
    # Fresh tokens until both workers' Redis connections are new: each worker's first call after
    # the restart may meet a pooled connection to the old server (fail closed: 503).
    statuses: list[int] = []
    while statuses[-6:] != [200] * 6 and len(statuses) < 40:
        statuses.append(httpx.get(stack.base + path, headers=drill_client.headers(path, aud=stack.base + path))
                        .status_code)
    replay = httpx.get(stack.base + path, headers={"Authorization": f"Bearer {token}"})
    window = watch.red_window()
    st.record("redis_restart", {
        "ready_again_after_restart_s": round(ready_s, 1),
        "readiness_red_s": round(window[1] - window[0], 1) if window else None,
        "fresh_calls_after_ready": len(statuses), "fresh_503_after_ready": statuses.count(503),
        "replay_after_restart_status": replay.status_code,
    })
    assert set(statuses) <= {200, 503} and statuses[-6:] == [200] * 6, statuses
    assert replay.status_code == 401, replay.text


def test_drill_kill9_service_restarted_by_policy(stack: st.Stack, drill_client: LocalIssuer) -> None:
    """kill -9 of the service's main process: restart: unless-stopped brings it back; once ready,
    no 5xx."""
    restarts = int(stack.inspect("cds", "{{.RestartCount}}"))
    pid = int(stack.inspect("cds", "{{.State.Pid}}"))
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while int(stack.inspect("cds", "{{.RestartCount}}")) == restarts and time.monotonic() < deadline:
        time.sleep(0.2)
    back_s = time.monotonic() - killed_at
    assert int(stack.inspect("cds", "{{.RestartCount}}")) == restarts + 1, "the restart policy did not restart it"
    ready_s = stack.wait_ready(timeout=120) + back_s
    with httpx.Client(timeout=30) as client:
        after = [hook_call(client, stack, drill_client) for _ in range(30)]
    st.record("kill9", {"restarted_after_s": round(back_s, 1), "ready_after_kill_s": round(ready_s, 1),
                        "calls_after_ready": len(after), "non_200_after_ready": sum(c.status != 200 for c in after)})
    assert [c.status for c in after] == [200] * len(after)
    assert all("critical" in {card["indicator"] for card in (c.body or {})["cards"]} for c in after)


def test_drill_sigterm_with_calls_in_flight(stack: st.Stack, drill_client: LocalIssuer) -> None:
    """SIGTERM (compose stop) under load: every call whose connection was accepted is answered;
    the rest are refused at connect (nothing processed, the EHR may retry)."""
    with st.Load(lambda c: hook_call(c, stack, drill_client), workers=6) as load:
        time.sleep(3)
        stop_at = time.monotonic()
        stack.compose("stop", "cds", timeout=120)
        stopped_s = time.monotonic() - stop_at
        time.sleep(1)
    calls = load.calls
    in_flight = [c for c in calls if c.started < stop_at < c.ended]
    first_refused = min((c.ended for c in calls if c.refused), default=None)
    # Calls left without an answer although their connection was made: reset while still queued
    # in the kernel (the listener closed under them, or the engine's port forwarding held the
    # published port during teardown). Whether the service ever saw one is in its own log: every
    # call it receives gets an audit record with the call's hookInstance. One seen there and not
    # answered would be a call the service dropped.
    unanswered = [c for c in calls if c.status is None and not c.refused]
    service_log = stack.logs("cds")
    dropped = [c for c in unanswered if c.key and c.key in service_log]
    failed = [c for c in calls if c.status is not None and c.status != 200]
    code = int(stack.inspect("cds", "{{.State.ExitCode}}"))
    stack.compose("start", "cds", timeout=120)
    ready_s = stack.wait_ready(timeout=120)
    st.record("sigterm", {
        "calls": len(calls), "in_flight_at_sigterm": len(in_flight),
        "in_flight_answered_200": sum(c.status == 200 for c in in_flight),
        "refused_at_connect": sum(c.refused for c in calls),
        "reset_before_reaching_service": len(unanswered) - len(dropped),
        "dropped_by_service": len(dropped), "unanswered_errors": sorted({c.error or "" for c in unanswered}),
        "unanswered_started_after_sigterm_s": sorted(round(c.started - stop_at, 2) for c in unanswered),
        "first_refusal_after_sigterm_s": round(first_refused - stop_at, 2) if first_refused else None,
        "non_200": len(failed), "stop_took_s": round(stopped_s, 1), "exit_code": code,
        "ready_after_start_s": round(ready_s, 1),
    })
    assert in_flight, "no call was in flight at SIGTERM: the drill proved nothing"
    assert all(c.status == 200 for c in in_flight), "every call in flight at SIGTERM is answered"
    assert not dropped, f"calls the service received and never answered: {[c.error for c in dropped]}"
    answered = [c for c in calls if c.status == 200]
    assert all(c.key in service_log for c in answered[-20:]), "the audit check can see calls in the log"
    assert not failed, f"non-200 answers: {[c.status for c in failed][:10]}"
    assert code in (0, 143), code  # ended by itself after draining, not killed at the grace period
    assert "Application shutdown complete" in stack.logs("cds")


# --------------------------------------------------------------------------- two replicas


@pytest.fixture(scope="module")
def replicas(stack: st.Stack) -> st.Stack:
    started = time.monotonic()
    stack.overrides += [REPLICAS, stack.workdir / "drill-replica.yaml"]
    # Only what changes (cds loses its port, cds-b and the proxy are new); the rest keeps running.
    stack.compose("up", "-d", "--no-build", "--pull", "never", "--no-deps", "cds", "cds-b", "proxy", timeout=600)
    for service in ("cds", "cds-b"):
        stack.wait_healthy(service)
    stack.wait_ready()
    st.record("replicas_up", {"up_to_ready_s": round(time.monotonic() - started, 1)})
    return stack


def seen_replicas(stack: st.Stack, issuer: LocalIssuer, calls: int = 6) -> set[str | None]:
    with httpx.Client(timeout=30) as client:
        return {hook_call(client, stack, issuer).replica for _ in range(calls)}


def test_replicas_token_used_on_one_is_refused_on_the_other(replicas: st.Stack, drill_client: LocalIssuer) -> None:
    deadline = time.monotonic() + 60
    while seen_replicas(replicas, drill_client) != {"a", "b"} and time.monotonic() < deadline:
        time.sleep(1)
    path = "/cds-services"
    token = drill_client.token(path, aud=replicas.base + path)
    auth = {"Authorization": f"Bearer {token}"}
    first = httpx.get(replicas.base + path, headers=auth)
    second = httpx.get(replicas.base + path, headers=auth)
    st.record("replica_token_reuse", {"first": [first.status_code, first.headers.get("x-cds-replica")],
                                      "second": [second.status_code, second.headers.get("x-cds-replica")]})
    assert first.status_code == 200
    assert {first.headers["x-cds-replica"], second.headers["x-cds-replica"]} == {"a", "b"}, "round robin"
    assert second.status_code == 401
    assert second.json()["resourceType"] == "OperationOutcome"


def test_replicas_proxy_limits(replicas: st.Stack) -> None:
    """The proxy enforces the body limit docs/deployment.md gives and never publishes /metrics."""
    big = httpx.post(replicas.base + HOOK_PATH, content=b"x" * 5_000_001,
                     headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    assert httpx.get(replicas.base + "/metrics").status_code == 404
    huge_header = httpx.get(replicas.base + "/cds-services", headers={"X-Pad": "x" * 40_000})
    assert huge_header.status_code in (400, 431)


def test_replicas_rolling_restart_under_load(replicas: st.Stack, drill_client: LocalIssuer) -> None:
    """deploy/compose/rolling-restart.sh (drain one replica in the proxy, restart it, put it back,
    then the other) while the EHR calls through the proxy: no failed call, both replicas served."""
    files: list[str] = ["-p", replicas.project, "-f", str(ROOT / "compose.yaml")]
    for path in replicas.overrides:
        files += ["-f", str(path)]
    env = {**replicas.env(), "COMPOSE": st.compose_binary()}
    with st.Load(lambda c: hook_call(c, replicas, drill_client), workers=4) as load:
        time.sleep(2)
        began = time.monotonic()
        out = st.run("bash", str(ROOT / "deploy/compose/rolling-restart.sh"), *files, env=env, timeout=600)
        took = time.monotonic() - began
        time.sleep(2)
    calls = load.calls
    # A refused connection to the published port means nothing was sent; podman's port forwarding
    # refused a few while netavark rewrote the network's rules for the restarting replica (the
    # proxy itself never stopped). Every call whose request was sent must be answered 200.
    refused = [c for c in calls if c.refused]
    bad = [c for c in calls if c.status != 200 and not c.refused]
    during = [c for c in calls if began <= c.started <= began + took]
    per = {r: sum((c.replica or "").startswith(r) for c in during) for r in ("a", "b")}
    failed_open = sum((c.replica or "").endswith("-open") for c in calls)
    st.record("rolling_restart", {"calls": len(calls), "calls_during_restart": len(during), "failed": len(bad),
                                  "refused_at_published_port": len(refused), "served_failing_open": failed_open,
                                  "per_replica_during_restart": per, "restart_both_s": round(took, 1)})
    assert "cds-b restarted and back in the proxy" in out
    assert len(during) > 50
    assert not bad, f"failed calls: {[(c.status, c.error) for c in bad][:10]}"
    assert len(refused) < len(calls) / 100, "refusals at the published port are a rare engine artefact"
    assert per["a"] and per["b"]
    restarts = [replicas.started_at(service) for service in ("cds", "cds-b")]
    assert all(t > time.time() - took - 5 for t in restarts), "both replicas really restarted"
