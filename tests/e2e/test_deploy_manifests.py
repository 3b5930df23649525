"""The deployment files validate with real tools: hadolint for the Dockerfile, the compose_spec
parser for compose.yaml, Helm's own Go library (helm-python-sdk) for lint and template, and the
Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields are errors) for every rendered
object. Beyond syntax, the settings each file hands the service are real settings that the
production profile accepts, and the objects refer to each other correctly."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cds_service.clinical.settings import TopicSettings
from cds_service.settings import Settings
from cds_service.trust.config import load_issuers
from tests.support.servers import ROOT, free_port, sekmet_binary, stop, unavailable, wait_http

CHART = ROOT / "deploy" / "helm" / "cds-fasciculation"
CI_VALUES = CHART / "ci" / "production-values.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / "cds.env.example"
K8S_VERSIONS = ("1.25.0", "1.30.0")
# The core settings and the topic's own (same CDS_ prefix, read by cds_service/clinical/settings.py).
SETTING_NAMES = {f"CDS_{name.upper()}" for name in (*Settings.model_fields, *TopicSettings.model_fields)}


def tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        unavailable(f"{name} not installed (pip install -e '.[test]')")
        raise AssertionError("unreachable")
    return found


def need(module: str, package: str) -> Any:
    """Import a validator from the test extra; its absence fails under CDS_TEST_REQUIRE_ALL=1."""
    try:
        return importlib.import_module(module)
    except ImportError:
        unavailable(f"{package} not installed (pip install -e '.[test]')")


def production_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the service would build them from exactly this environment."""
    for key in [k for k in os.environ if k.startswith("CDS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CDS_PROFILE", env.get("CDS_PROFILE", "production"))  # the image's default
    return Settings()


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_is_hadolint_clean() -> None:
    out = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_build_script_is_shellcheck_clean() -> None:
    script = ROOT / "deploy" / "container" / "build-local.sh"
    out = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_production_shape() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2  # build and runtime stages
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"cds-fasciculation\", \"healthcheck\"\]", text, re.M)
    assert "CDS_PROFILE=production" in text and "CDS_WORKERS=" in text
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1 :].count("!cds_service/") == 1  # allow-list, not deny-list


# --------------------------------------------------------------------------- compose


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable syntax (${VAR}, ${VAR:-default}, ${VAR-default}); compose_spec parses the
    file after this step, as docker compose does."""

    def sub(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        if op == ":-":
            return value or default
        if op == "-":
            return default if value is None else value
        if value is None:
            raise KeyError(f"compose.yaml needs ${{{name}}} without a default")
        return value

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}", sub, text)


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    compose_spec = need("compose_spec", "compose-spec")
    text = interpolate((ROOT / "compose.yaml").read_text(), {})
    parsed = compose_spec.PyOptions(apply_merge=True).from_yaml(text)  # raises on any spec violation
    parsed.validate()
    data: dict[str, Any] = parsed.to_dict()
    return data


def test_compose_stack_structure(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"migrate", "cds", "postgres", "redis", "fhir", "fhir-seed"}
    cds = services["cds"]
    assert cds["read_only"] is True and cds["tmpfs"] == ["/tmp"] and cds["cap_drop"] == ["ALL"]
    assert cds["env_file"] == "deploy/compose/cds.env"
    assert cds["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert cds["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["migrate", "up"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("cds", "postgres", "redis", "fhir"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    # the FHIR demo exists only under its profile; the core stack has no profile
    assert {n for n, s in services.items() if s.get("profiles")} == {"fhir", "fhir-seed"}
    assert all(s["profiles"] == ["demo"] for s in services.values() if s.get("profiles"))
    named = {
        v.split(":", 1)[0]
        for s in services.values()
        for v in s.get("volumes", [])
        if isinstance(v, str) and not v.startswith((".", "/"))
    }
    assert named == set(compose["volumes"])
    for s in services.values():
        for v in s.get("volumes", []):
            if isinstance(v, str) and v.startswith("./"):
                assert (ROOT / v.split(":", 1)[0]).exists(), v


def test_env_example_is_a_valid_production_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    env = read_env_file(ENV_EXAMPLE)
    unknown = {k for k in env if k.startswith("CDS_")} - SETTING_NAMES
    assert not unknown, f"not settings of the service: {unknown}"
    password = env.pop("POSTGRES_PASSWORD")
    assert f":{password}@postgres:5432/" in env["CDS_DATABASE_URL"]
    settings = production_settings(env, monkeypatch)
    assert settings.profile == "production" and settings.redis_url == "redis://redis:6379/0"
    assert settings.metrics_port == 9100 and not settings.analytics_on
    assert len(load_issuers(settings)) == 1


@contextlib.contextmanager
def sekmet_with(settings: dict[str, Any], work: Path) -> Iterator[str]:
    """SEKMET started from the given settings file content (as the compose demo starts it)."""
    exe = sekmet_binary()
    if exe is None:
        unavailable("SEKMET FHIR server not installed (pip install sekmet-fhir==0.1.1)")
        raise AssertionError("unreachable")
    work.mkdir()
    (work / "settings.yaml").write_text(yaml.safe_dump(settings))
    with (work / "sekmet.log").open("wb") as log:
        proc = subprocess.Popen([exe, "serve", "-c", "settings.yaml"], cwd=work, stdout=log, stderr=log)
    try:
        wait_http(f"{settings['base_url']}/metadata", proc, timeout=60)
        yield str(settings["base_url"])
    finally:
        stop(proc)


def test_demo_fhir_server_config_and_seed_really_load(tmp_path: Path) -> None:
    """The demo profile's SEKMET settings and seed script, run here against a real SEKMET."""
    demo = yaml.safe_load((ROOT / "deploy/compose/demo/sekmet.yaml").read_text())
    port = free_port()
    demo.update(base_url=f"http://127.0.0.1:{port}/fhir", host="127.0.0.1", port=port)
    fixtures = tmp_path / "fixtures"
    (fixtures / "patients").mkdir(parents=True)
    shutil.copytree(ROOT / "fixtures" / "background", fixtures / "background")
    for name in ("r01-weakness.json", "bg50-r04.json", "no-trigger.json"):
        shutil.copy(ROOT / "fixtures" / "patients" / name, fixtures / "patients" / name)
    with sekmet_with(demo, tmp_path / "sekmet") as base:
        out = subprocess.run(
            [sys.executable, str(ROOT / "deploy/compose/demo/seed.py"), base, str(fixtures)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        total = httpx.get(f"{base}/Patient", params={"_summary": "count"}).json()["total"]
        assert total == 3
        obs = httpx.get(f"{base}/Observation", params={"_summary": "count"}).json()["total"]
        assert obs >= 50  # the background history came along


# --------------------------------------------------------------------------- Helm / Kubernetes


@pytest.fixture(scope="module")
def helm() -> Any:
    return need("helm_python", "helm-python-sdk")


def render(helm: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name="cds", namespace="hospital", is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def ci_values(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(CI_VALUES.read_text())
    for dotted, value in changes.items():
        node = values
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return values


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


VARIANTS = {
    "ci-values": ci_values(),
    "fixed-replicas-existing-secret-no-extras": ci_values(
        autoscaling__enabled=False,
        podDisruptionBudget__enabled=False,
        ingress__enabled=False,
        metrics__enabled=False,
        analytics__enabled=False,
        migrations__enabled=False,
        secrets={"existingSecret": "hospital-cds-secrets"},
    ),
}


def test_helm_lint_strict(helm: Any) -> None:
    report = helm.lint(str(CHART), yaml.safe_load(CI_VALUES.read_text()), strict=True)
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_chart_refuses_to_render_without_required_values(helm: Any) -> None:
    with pytest.raises(helm.HelmRenderError, match="publicBaseUrl is required"):
        render(helm, {})
    with pytest.raises(helm.HelmRenderError, match=r"trust\.issuers"):
        render(helm, ci_values(trust={"issuers": []}))
    with pytest.raises(helm.HelmRenderError, match="analyticsToken"):
        render(helm, ci_values(secrets__analyticsToken=""))


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, helm: Any) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(helm, VARIANTS[request.param])


def test_rendered_objects_match_kubernetes_schemas(variant: tuple[str, list[dict[str, Any]]]) -> None:
    kv = need("kubernetes_validate", "kubernetes-validate")
    _, docs = variant
    for version in K8S_VERSIONS:
        for doc in docs:
            kv.validate(doc, version, strict=True)  # raises ValidationError with the path


def test_rendered_objects_fit_together(variant: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = variant
    kinds = by_kind(docs)
    deploy = kinds["Deployment"][0]
    pod = deploy["spec"]["template"]
    labels = pod["metadata"]["labels"]
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert kinds["Service"][0]["spec"]["selector"] == selector
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["capabilities"]["drop"] == ["ALL"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/etc/cds/trust"}
    secret_name = next(e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e)
    config = {c["metadata"]["name"]: c["data"] for c in kinds["ConfigMap"]}
    env_cm = next(e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e)
    grace = int(config[env_cm]["CDS_SHUTDOWN_GRACE_SECONDS"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > grace + 5
    if name == "ci-values":
        assert kinds["Secret"][0]["metadata"]["name"] == secret_name
        hpa = kinds["HorizontalPodAutoscaler"][0]
        assert hpa["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
        assert "replicas" not in deploy["spec"]  # the HPA owns the count
        assert kinds["PodDisruptionBudget"][0]["spec"]["selector"]["matchLabels"] == selector
        rule = kinds["Ingress"][0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert rule == {"name": kinds["Service"][0]["metadata"]["name"], "port": {"name": "http"}}
        assert {p["name"] for p in container["ports"]} == {"http", "metrics"}
        assert [c["args"] for c in pod["spec"]["initContainers"]] == [["migrate", "up"]]
    else:
        assert secret_name == "hospital-cds-secrets" and "Secret" not in kinds
        assert "HorizontalPodAutoscaler" not in kinds and deploy["spec"]["replicas"] == 2
        assert "PodDisruptionBudget" not in kinds and "Ingress" not in kinds
        assert {p["name"] for p in container["ports"]} == {"http"}
        assert "initContainers" not in pod["spec"]


def test_rendered_configuration_is_accepted_by_the_service(
    helm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ConfigMap + Secret as the pod's environment, the trust ConfigMap as the mounted directory:
    the production profile accepts them and loads every trusted issuer."""
    kinds = by_kind(render(helm, ci_values()))
    env: dict[str, str] = {}
    for cm in kinds["ConfigMap"]:
        if cm["metadata"]["name"].endswith("-env"):
            env.update(cm["data"])
        else:
            for file, content in cm["data"].items():
                (tmp_path / file).write_text(content.replace("/etc/cds/trust/", f"{tmp_path}/"))
    env.update(kinds["Secret"][0]["stringData"])
    assert set(env) <= SETTING_NAMES, set(env) - SETTING_NAMES
    env["CDS_TRUST_CONFIG_FILE"] = str(tmp_path / "trusted-issuers.yaml")
    settings = production_settings(env, monkeypatch)
    assert settings.metrics_port == 9100 and settings.analytics_on and settings.workers == 2
    assert set(load_issuers(settings)) == {"https://ehr.example.org", "https://other-ehr.example.org"}
