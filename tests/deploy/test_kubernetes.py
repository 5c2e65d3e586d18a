"""deploy/kubernetes/: each overlay, rendered by `kubectl kustomize` as `kubectl apply -k`
renders it, is valid against the schemas of the Kubernetes version we target and keeps what
the deployment relies on: probes on /health, sized resources, one beat, the migration Job,
no secret in the repository, the relay's WebSocket timeouts at the ingress.

kubectl is required (it carries kustomize): without it these tests fail, they never skip.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from django.core.validators import MaxValueValidator

from campaigns.models import Campaign
from tests.processes import ROOT, free_port

# The Kubernetes version the manifests are checked against: kubectl's (v1.32 on CI's
# runners and this project's machines). The schemas come with kubernetes-validate.
KUBERNETES_VERSION = "1.32"

KUSTOMIZE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(
    path.name
    for path in (KUSTOMIZE / "overlays").iterdir()
    if (path / "kustomization.yaml").is_file()
)
NGINX_SITE = ROOT / "deploy" / "nginx" / "callcenter.conf"
COMPOSE = ROOT / "docker-compose.yml"
SECRET_NAME = "callcenter"
WORKLOADS = ("Deployment", "Job")

Manifest = dict[str, Any]


class RenderError(Exception):
    """kustomize refused the directory (its own message)."""


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl not found on PATH: the Kubernetes manifests (deploy/kubernetes/) cannot be "
            f"rendered and checked. Install kubectl {KUBERNETES_VERSION} (it includes kustomize): "
            "https://kubernetes.io/docs/tasks/tools/"
        )
    return path


@functools.cache
def _rendered(directory: Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {result.stderr.strip()}")
    return result.stdout


def render(directory: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(_rendered(directory)) if doc]


def schema_problems(manifests: list[Manifest]) -> list[str]:
    """Every object checked against the schema of its kind, strictly (unknown fields are
    errors): one line per object that fails, naming it, the field and the reason."""
    problems = []
    for manifest in manifests:
        name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            problems.append(f"{name}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name}: {exc.message}")
    return problems


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_spec(workload: Manifest) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    for manifest in manifests:
        if manifest["kind"] in WORKLOADS:
            for container in pod_spec(manifest)["containers"]:
                yield f"{manifest['kind']}/{manifest['metadata']['name']}", container


def config(manifests: list[Manifest]) -> dict[str, str]:
    (config_map,) = of_kind(manifests, "ConfigMap").values()
    return config_map["data"]


_SUFFIXES = {"m": 0.001, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(value: str | int) -> float:
    """A Kubernetes quantity as a number ("500m" CPU is 0.5, "1Gi" is 2**30); the schema
    takes any string, so a typo would only show at apply time."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi)?", str(value))
    assert match, f"not a Kubernetes quantity: {value!r}"
    return float(match.group(1)) * _SUFFIXES.get(match.group(2) or "", 1)


def nginx_seconds(directive: str) -> int:
    value = re.search(rf"^\s*{directive}\s+(\d+)([smh]);", NGINX_SITE.read_text(), re.M)
    assert value, f"{directive} not in {NGINX_SITE}"
    return int(value.group(1)) * {"s": 1, "m": 60, "h": 3600}[value.group(2)]


def nginx_size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", text.lower()).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[unit]


def compose_service(name: str) -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"][name]


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(KUSTOMIZE / "overlays" / request.param)


def test_there_are_staging_and_production_overlays() -> None:
    assert {"staging", "production"} <= set(OVERLAYS)


@pytest.mark.parametrize("directory", ["base", *(f"overlays/{name}" for name in OVERLAYS)])
def test_every_object_is_valid_for_the_kubernetes_version(directory: str) -> None:
    manifests = render(KUSTOMIZE / directory)

    problems = schema_problems(manifests)

    assert manifests, f"{directory} renders nothing"
    assert problems == [], "\n".join(problems)


def test_overlay_renders_every_part_of_the_deployment(overlay: list[Manifest]) -> None:
    names = {(m["kind"], m["metadata"]["name"]) for m in overlay}

    assert {
        ("Deployment", "web"),
        ("Deployment", "worker"),
        ("Deployment", "beat"),
        ("Job", "migrate"),
        ("Service", "web"),
        ("Ingress", "web"),
        ("Ingress", "relay"),
        ("HorizontalPodAutoscaler", "web"),
        ("HorizontalPodAutoscaler", "worker"),
        ("PodDisruptionBudget", "web"),
        ("ServiceAccount", "callcenter"),
    } <= names
    assert len(of_kind(overlay, "ConfigMap")) == 1
    assert all(m["metadata"].get("namespace") for m in overlay), "the overlay sets a namespace"


def test_every_container_has_sized_requests_and_limits(overlay: list[Manifest]) -> None:
    for name, container in containers(overlay):
        resources = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert 0 < request <= limit, f"{name}: {resource} request {request} > limit {limit}"


def test_every_deployment_is_probed(overlay: list[Manifest]) -> None:
    for name, deployment in of_kind(overlay, "Deployment").items():
        for container in pod_spec(deployment)["containers"]:
            assert container.get("startupProbe"), f"{name}: no startupProbe"
            assert container.get("livenessProbe"), f"{name}: no livenessProbe"


def test_web_is_ready_on_health_with_a_host_django_allows(overlay: list[Manifest]) -> None:
    (web,) = pod_spec(of_kind(overlay, "Deployment")["web"])["containers"]
    probe = web["readinessProbe"]["httpGet"]
    host = {h["name"]: h["value"] for h in probe.get("httpHeaders", [])}.get("Host")
    allowed = config(overlay)["ALLOWED_HOSTS_EXTRA"].split(",")

    assert probe["path"] == "/health"
    assert probe["port"] in {port["name"] for port in web["ports"]} | {8000}
    assert host in allowed, "Django answers 400 to a Host it does not allow"


def test_web_allows_its_own_pod_address_for_prometheus(overlay: list[Manifest]) -> None:
    (web,) = pod_spec(of_kind(overlay, "Deployment")["web"])["containers"]
    names = [variable["name"] for variable in web["env"]]
    env = {variable["name"]: variable for variable in web["env"]}

    # Kubernetes expands $(POD_IP) only from a variable defined before the one using it.
    assert names.index("POD_IP") < names.index("ALLOWED_HOSTS_EXTRA")
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    hosts = env["ALLOWED_HOSTS_EXTRA"]["value"].split(",")
    assert "$(POD_IP)" in hosts
    assert set(config(overlay)["ALLOWED_HOSTS_EXTRA"].split(",")) <= set(hosts)


def _liveness_script(overlay: list[Manifest]) -> str:
    (web,) = pod_spec(of_kind(overlay, "Deployment")["web"])["containers"]
    assert web["startupProbe"]["exec"] == web["livenessProbe"]["exec"]
    python, flag, script = web["livenessProbe"]["exec"]["command"]
    assert (python, flag) == ("python", "-c")
    return str(script)


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    hosts: list[str] = []

    def do_GET(self) -> None:
        type(self).hosts.append(f"{self.path} {self.headers['Host']}")
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "alive"), [(200, True), (503, True), (400, False), (500, False)]
)
def test_web_liveness_asks_health_and_accepts_a_dependency_down(
    overlay: list[Manifest], status: int, alive: bool
) -> None:
    # given: /health answering `status` (503: PostgreSQL or Redis down, the process fine)
    script = _liveness_script(overlay)
    assert "127.0.0.1:8000/health" in script
    _Health.status, _Health.hosts = status, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # when: the probe's script runs against it
        address = f"127.0.0.1:{server.server_address[1]}"
        result = subprocess.run(
            [sys.executable, "-c", script.replace("127.0.0.1:8000", address)],
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()

    # then: a 503 keeps the pod alive; a wrong answer does not
    assert (result.returncode == 0) is alive
    allowed = config(overlay)["ALLOWED_HOSTS_EXTRA"].split(",")
    assert [line.split(" ")[1] in allowed for line in _Health.hosts] == [True]
    assert _Health.hosts[0].startswith("/health ")


def test_web_liveness_fails_when_nothing_answers(overlay: list[Manifest]) -> None:
    script = _liveness_script(overlay).replace("127.0.0.1:8000", f"127.0.0.1:{free_port()}")

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=False
    )

    assert result.returncode != 0


@pytest.mark.parametrize("service", ["worker", "beat"])
def test_worker_and_beat_are_probed_as_compose_checks_them(
    overlay: list[Manifest], service: str
) -> None:
    (container,) = pod_spec(of_kind(overlay, "Deployment")[service])["containers"]
    check = compose_service(service)["healthcheck"]["test"]

    assert check[0] == "CMD"
    assert container["livenessProbe"]["exec"]["command"] == check[1:]
    assert container["startupProbe"]["exec"]["command"] == check[1:]


@pytest.mark.parametrize("service", ["worker", "beat", "migrate"])
def test_commands_are_composes(overlay: list[Manifest], service: str) -> None:
    workloads = {**of_kind(overlay, "Deployment"), **of_kind(overlay, "Job")}
    (container,) = pod_spec(workloads[service])["containers"]
    command = compose_service(service)["command"]

    # the worker names its pool's size: Celery's default counts the node's cores
    assert container["args"][: len(command)] == command


def test_containers_keep_the_images_entrypoint(overlay: list[Manifest]) -> None:
    # `command` would replace deploy/entrypoint.sh, which waits for PostgreSQL and Redis.
    assert [name for name, container in containers(overlay) if "command" in container] == []


def test_migration_job_migrates_once(overlay: list[Manifest]) -> None:
    job = of_kind(overlay, "Job")["migrate"]
    (container,) = pod_spec(job)["containers"]

    assert container["args"] == ["python", "manage.py", "migrate", "--noinput"]
    assert pod_spec(job)["restartPolicy"] == "Never"


def test_the_migration_step_applies_what_the_job_needs(overlay: list[Manifest]) -> None:
    # docs/deploy.md: `kubectl apply -k ... -l 'app.kubernetes.io/component in
    # (config,migrate)'` first, before the Deployments roll.
    step = {
        (m["kind"], m["metadata"]["name"])
        for m in overlay
        if m["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        in {"config", "migrate"}
    }
    job = pod_spec(of_kind(overlay, "Job")["migrate"])
    (container,) = job["containers"]
    config_maps = {s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s}

    assert ("Job", "migrate") in step
    assert ("ServiceAccount", job["serviceAccountName"]) in step
    assert {("ConfigMap", name) for name in config_maps} <= step
    assert not {kind for kind, _ in step} & {"Deployment", "Service", "Ingress"}


def test_autoscalers_scale_web_and_worker_only(overlay: list[Manifest]) -> None:
    deployments = of_kind(overlay, "Deployment")
    targets = {}
    for name, hpa in of_kind(overlay, "HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment"), name
        assert target["name"] in deployments, f"{name} scales a Deployment that is not there"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], name
        targets[target["name"]] = hpa

    assert set(targets) == {"web", "worker"}
    # An apply would reset the count the autoscaler set.
    assert "replicas" not in deployments["web"]["spec"]
    assert "replicas" not in deployments["worker"]["spec"]


def test_exactly_one_beat(overlay: list[Manifest]) -> None:
    beat = of_kind(overlay, "Deployment")["beat"]

    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_overlays_set_the_image_tag(overlay: list[Manifest]) -> None:
    base_images = {c["image"] for _, c in containers(render(KUSTOMIZE / "base"))}
    images = {container["image"] for _, container in containers(overlay)}

    assert base_images == {"callcenter"}, "the base names no tag: each overlay chooses it"
    assert len(images) == 1, "web, worker, beat and the migration run one release"
    (image,) = images
    repository, _, tag = image.rpartition(":")
    assert "/" in repository and tag and tag != "latest", image


def test_overlays_differ_where_they_should() -> None:
    staging, production = (
        render(KUSTOMIZE / "overlays" / name) for name in ("staging", "production")
    )

    assert config(staging)["APP_ENV"] == "staging"
    assert config(production)["APP_ENV"] == "production"
    assert config(staging)["APP_URL"] != config(production)["APP_URL"]
    assert staging[0]["metadata"]["namespace"] != production[0]["metadata"]["namespace"]


def test_no_secret_values_in_the_repository(overlay: list[Manifest]) -> None:
    assert of_kind(overlay, "Secret") == {}
    for path in [*KUSTOMIZE.rglob("*.yaml"), *KUSTOMIZE.rglob("*.yml")]:
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (doc and doc.get("kind") == "Secret"), f"{path} holds a Secret"
            assert not (doc and doc.get("secretGenerator")), f"{path} generates a Secret"
    example = (KUSTOMIZE / "base" / "secret.example.env").read_text().splitlines()
    filled = [line for line in example if line and not line.startswith("#") and "=" in line]
    assert filled and all(line.endswith("=") for line in filled), "keys only, no values"
    # Every workload reads the Secret by name, created by hand (docs/deploy.md).
    for name, container in containers(overlay):
        refs = [
            source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source
        ]
        assert refs == [SECRET_NAME], name


def test_the_config_map_holds_no_secret(overlay: list[Manifest]) -> None:
    example = (KUSTOMIZE / "base" / "secret.example.env").read_text()
    secret_keys = set(re.findall(r"^(\w+)=", example, re.M))
    keys = set(config(overlay))

    assert keys & secret_keys == set()
    assert [key for key in keys if re.search(r"SECRET|TOKEN|PASSWORD|API_KEY", key)] == []


# The media storage's variables (MEDIA_STORAGE, S3_*), which .env.example lists once that
# storage is merged; every other name must be one the app reads.
MEDIA_VARIABLES = {
    "MEDIA_STORAGE",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "S3_REGION",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
}


def test_config_and_secret_name_variables_the_app_reads(overlay: list[Manifest]) -> None:
    known = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    example = (KUSTOMIZE / "base" / "secret.example.env").read_text()
    secret_keys = set(re.findall(r"^(\w+)=", example, re.M))

    assert set(config(overlay)) - known - MEDIA_VARIABLES == set()
    assert secret_keys - known - MEDIA_VARIABLES == set()


def test_media_go_to_a_bucket(overlay: list[Manifest]) -> None:
    data = config(overlay)

    assert data["MEDIA_STORAGE"] == "s3"
    assert data["S3_BUCKET"]
    assert of_kind(overlay, "PersistentVolumeClaim") == {}, "no disk is shared between pods"


def test_pods_run_unprivileged_on_a_read_only_image(overlay: list[Manifest]) -> None:
    (account,) = of_kind(overlay, "ServiceAccount").values()
    assert account["automountServiceAccountToken"] is False
    for manifest in overlay:
        if manifest["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(manifest)
        name = manifest["metadata"]["name"]
        assert spec["serviceAccountName"] == account["metadata"]["name"], name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        scratch = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in scratch, f"{name}: /tmp must be writable"  # noqa: S108


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def test_service_and_budget_select_the_web_pods(overlay: list[Manifest]) -> None:
    web = of_kind(overlay, "Deployment")["web"]
    labels = web["spec"]["template"]["metadata"]["labels"]
    service = of_kind(overlay, "Service")["web"]
    ports = {p["name"] for c in pod_spec(web)["containers"] for p in c.get("ports", [])}
    budget = of_kind(overlay, "PodDisruptionBudget")["web"]

    assert _selects(service["spec"]["selector"], labels)
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    assert _selects(budget["spec"]["selector"]["matchLabels"], labels)
    for name, deployment in of_kind(overlay, "Deployment").items():
        template = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(deployment["spec"]["selector"]["matchLabels"], template), name
        assert name == "web" or not _selects(service["spec"]["selector"], template), name


def test_ingress_serves_app_url_on_the_web_service(overlay: list[Manifest]) -> None:
    host = urlsplit(config(overlay)["APP_URL"]).hostname
    service = of_kind(overlay, "Service")["web"]
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    ingresses = of_kind(overlay, "Ingress")

    for name, ingress in ingresses.items():
        annotations = ingress["metadata"].get("annotations", {})
        assert not any("rewrite" in key for key in annotations), f"{name}: signatures need the path"
        assert [t["hosts"] for t in ingress["spec"]["tls"]] == [[host]], name
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] == host, name
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == "web", name
                assert backend["port"]["name"] in service_ports, name


def _ingress_for(overlay: list[Manifest], prefix: str) -> dict[str, str]:
    (annotations,) = [
        ingress["metadata"].get("annotations", {})
        for ingress in of_kind(overlay, "Ingress").values()
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
        if path["path"] == prefix
    ]
    return dict(annotations)


def test_relay_websockets_outlive_the_longest_call(overlay: list[Manifest]) -> None:
    annotations = _ingress_for(overlay, "/relay/")
    field = Campaign._meta.get_field("time_limit_seconds")
    (longest_call,) = [v.limit_value for v in field.validators if isinstance(v, MaxValueValidator)]

    for name, directive in (("read", "proxy_read_timeout"), ("send", "proxy_send_timeout")):
        seconds = int(annotations[f"nginx.ingress.kubernetes.io/proxy-{name}-timeout"])
        assert seconds == nginx_seconds(directive), "as deploy/nginx/callcenter.conf"
        assert seconds > longest_call
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


def test_uploads_fit_through_the_ingress(overlay: list[Manifest]) -> None:
    annotations = _ingress_for(overlay, "/")
    site = re.search(r"^\s*client_max_body_size\s+(\w+);", NGINX_SITE.read_text(), re.M)

    assert site
    body = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert nginx_size(body) == nginx_size(site.group(1)) >= 512 * 2**20


# --- The checks fail on broken manifests ----------------------------------------------
@pytest.fixture
def broken_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUSTOMIZE, copy)
    return copy


def test_a_misspelt_field_fails_the_schema_check(broken_copy: Path) -> None:
    web = broken_copy / "base" / "web.yaml"
    web.write_text(web.read_text().replace("failureThreshold: 30", "failureTreshold: 30", 1))

    problems = schema_problems(render(broken_copy / "overlays" / "production"))

    assert len(problems) == 1
    assert problems[0].startswith("Deployment/web: spec.template.spec.containers.0.startupProbe")
    assert "failureTreshold" in problems[0]


def test_a_wrong_type_fails_the_schema_check(broken_copy: Path) -> None:
    beat = broken_copy / "base" / "beat.yaml"
    beat.write_text(beat.read_text().replace("replicas: 1", "replicas: one", 1))

    problems = schema_problems(render(broken_copy / "overlays" / "staging"))

    assert [p.split(":")[0] for p in problems] == ["Deployment/beat"]


def test_an_unknown_kind_fails_the_schema_check() -> None:
    manifest = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "x"}}

    assert schema_problems([manifest]) != []


def test_a_kustomization_naming_a_missing_file_fails_to_render(broken_copy: Path) -> None:
    (broken_copy / "base" / "worker.yaml").unlink()

    with pytest.raises(RenderError, match=r"worker\.yaml"):
        render(broken_copy / "overlays" / "production")


def test_without_kubectl_the_tests_fail_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)

    with pytest.raises(pytest.fail.Exception, match="kubectl not found"):
        kubectl()
