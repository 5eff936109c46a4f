"""Queue-mode deployment recipes: deploy/k8s/ and deploy/docker-compose.queue.yml.

No cluster and no Docker engine are available to the test suite, so nothing here is
applied or started (``make e2e-queue`` runs the same topology with real processes).
What is checked: every Kubernetes object passes the official OpenAPI schema in strict
mode (kubernetes-validate: kinds, required fields, types, no unknown fields); the
objects agree with each other (selectors, ports, probes, volumes, Secret/ConfigMap
references); the hardening the README promises holds for every container; each worker
pod holds a taskbox wired to *its* broker; and every environment variable is one the
receiving program reads: taskbox's names are taken from ``src/taskbox/config.py``,
n8n's from a snapshot that is re-derived from the installed n8n 2.41.1 when present.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from taskbox.config import Config
from taskbox.runner.health import READINESS_PATH
from tests.deploy.test_deploy import (
    ALWAYS_PASSED,
    DEPLOY,
    DOCKERFILE,
    IMAGE_VENV_BIN,
    load_yaml_subset,
    taskbox_reads,
)

K8S = DEPLOY / "k8s"
QUEUE_COMPOSE = DEPLOY / "docker-compose.queue.yml"
N8N_ENV_SNAPSHOT = Path(__file__).with_name("n8n-2.41.1-env.txt")
N8N_MODULES = Path(os.environ.get("N8N_E2E_HOME", Path.home() / ".cache/n8n-e2e")) \
    / "app/node_modules"
K8S_VERSION = "1.31.0"  # native sidecars (initContainers restartPolicy: Always) since 1.29
N8N_IMAGE = "docker.n8n.io/n8nio/n8n:"

Doc = dict[str, Any]


# --------------------------------------------------------------------------- loading


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def manifests() -> list[Doc]:
    docs: list[Doc] = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{path.name}: a document that is not a mapping"
            docs.append(doc)
    return docs


def n8n_reads() -> set[str]:
    return {line.strip() for line in N8N_ENV_SNAPSHOT.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def scan_n8n_env(modules: Path) -> set[str]:
    """The names n8n reads, from its installed JavaScript: @n8n/config's ``Env('NAME')``
    decorators and ``process.env.NAME`` in n8n and n8n-core."""
    names: set[str] = set()
    for path in (modules / "@n8n/config/dist").rglob("*.js"):
        names.update(re.findall(r"Env\)\('([A-Z][A-Z0-9_]*)'", path.read_text(errors="replace")))
    pattern = re.compile(
        r"process\.env\.([A-Z][A-Z0-9_]*)|process\.env\[['\"]([A-Z][A-Z0-9_]*)['\"]\]")
    for sub in ("n8n/dist", "n8n-core/dist"):
        for path in (modules / sub).rglob("*.js"):
            for a, b in pattern.findall(path.read_text(errors="replace")):
                names.add(a or b)
    return names


# --------------------------------------------------------------------------- helpers


def pod_of(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def all_containers(pod: Doc) -> list[Doc]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def env_of(container: Doc, configmaps: dict[str, dict[str, str]]) -> dict[str, str]:
    """name -> value; references shown as ``secret:<name>/<key>``; envFrom ConfigMaps
    first, so that ``env`` wins as in Kubernetes."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps.get(source.get("configMapRef", {}).get("name", ""), {}))
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        env[item["name"]] = (f"secret:{ref['name']}/{ref['key']}" if ref
                             else item.get("value", ""))
    return env


def is_taskbox(container: Doc) -> bool:
    return "taskbox" in container["image"]


def is_n8n(container: Doc) -> bool:
    return str(container["image"]).startswith(N8N_IMAGE)


def port_number(container: Doc, port: int | str) -> int | None:
    for p in container.get("ports", []):
        if port in (p.get("name"), p["containerPort"]):
            return int(p["containerPort"])
    return None


def base_name(name: str, known: set[str]) -> str:
    """``<NAME>_FILE`` is read as NAME by both programs."""
    return name.removesuffix("_FILE") if name.endswith("_FILE") and \
        name.removesuffix("_FILE") in known else name


# --------------------------------------------------------------------------- checks


def problems(docs: list[Doc]) -> list[str]:
    """Everything that makes the objects disagree with each other or with the hardening
    the README promises; [] for good manifests."""
    out: list[str] = []
    secrets = {d["metadata"]["name"]: {*d.get("stringData", {}), *d.get("data", {})}
               for d in docs if d["kind"] == "Secret"}
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs
                  if d["kind"] == "ConfigMap"}
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    for w in workloads:
        name, spec, pod = w["metadata"]["name"], w["spec"], pod_of(w)
        labels = spec["template"]["metadata"].get("labels", {})
        selector = spec["selector"].get("matchLabels", {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            out.append(f"{name}: selector does not match the pod's labels")
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            out.append(f"{name}: pod securityContext.runAsNonRoot is not true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            out.append(f"{name}: pod seccompProfile is not RuntimeDefault")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        volumes.update({c["metadata"]["name"]: c for c in spec.get("volumeClaimTemplates", [])})
        for c in all_containers(pod):
            cname = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            if sc.get("runAsNonRoot") is not True or not isinstance(uid, int) or uid == 0:
                out.append(f"{cname}: not pinned to a non-root uid")
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{cname}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                out.append(f"{cname}: readOnlyRootFilesystem is not true")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                out.append(f"{cname}: capabilities are not dropped (drop: [ALL])")
            if sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") \
                    != "RuntimeDefault":
                out.append(f"{cname}: seccompProfile is not RuntimeDefault")
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(kind) or {}
                target = probe.get("httpGet") or probe.get("tcpSocket")
                if target and port_number(c, target["port"]) is None:
                    out.append(f"{cname}: {kind} port {target['port']!r} is not a port of "
                               "the container")
            for mount in c.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    out.append(f"{cname}: volumeMount {mount['name']!r} has no volume")
            for item in c.get("env", []):
                if ("value" in item) == ("valueFrom" in item):
                    out.append(f"{cname}: env {item['name']} needs exactly one of "
                               "value/valueFrom")
                elif "value" in item and not isinstance(item["value"], str):
                    out.append(f"{cname}: env {item['name']} is not a string")
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in secrets.get(ref["name"], set()):
                    out.append(f"{cname}: env {item['name']} refers to a missing secret key "
                               f"{ref['name']}/{ref['key']}")
            for source in c.get("envFrom", []):
                ref_name = source.get("configMapRef", {}).get("name")
                if ref_name not in configmaps:
                    out.append(f"{cname}: envFrom refers to a missing ConfigMap {ref_name!r}")
        for vol in pod.get("volumes", []):
            secret = vol.get("secret")
            if secret and secret["secretName"] not in secrets:
                out.append(f"{name}: volume {vol['name']} refers to a missing Secret")
            for item in (secret or {}).get("items", []):
                if item["key"] not in secrets.get(secret["secretName"], set()):
                    out.append(f"{name}: volume {vol['name']} projects a missing key "
                               f"{item['key']}")
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"].get("selector", {})
        matching = [w for w in workloads if all(
            w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
            for k, v in selector.items())]
        if len(matching) != 1:
            out.append(f"Service {svc['metadata']['name']}: selects {len(matching)} workloads")
            continue
        containers = all_containers(pod_of(matching[0]))
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if all(port_number(c, target) is None for c in containers):
                out.append(f"Service {svc['metadata']['name']}: targetPort {target!r} is "
                           "not a container port")
    return out


def queue_problems(docs: list[Doc], taskbox_names: set[str], n8n_names: set[str]) -> list[str]:
    """Queue mode as n8n needs it, and one taskbox beside every worker."""
    out: list[str] = []
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs
                  if d["kind"] == "ConfigMap"}
    services = {d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]}
                for d in docs if d["kind"] == "Service"}
    keys: set[str] = set()
    mains, workers = 0, 0
    for w in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet")):
        pod = pod_of(w)
        for n8n in (c for c in all_containers(pod) if is_n8n(c)):
            where = f"{w['metadata']['name']}/{n8n['name']}"
            env = env_of(n8n, configmaps)
            unknown = sorted(n for n in env if base_name(n, n8n_names) not in n8n_names)
            if unknown:
                out.append(f"{where}: variables n8n does not read: {unknown}")
            for name, want in (("EXECUTIONS_MODE", "queue"), ("DB_TYPE", "postgresdb"),
                               ("N8N_RUNNERS_MODE", "external")):
                if env.get(name) != want:
                    out.append(f"{where}: {name} is {env.get(name)!r}, not {want!r}")
            for host, port in (("QUEUE_BULL_REDIS_HOST", "QUEUE_BULL_REDIS_PORT"),
                               ("DB_POSTGRESDB_HOST", "DB_POSTGRESDB_PORT")):
                if not env.get(port, "").isdigit() or \
                        int(env[port]) not in services.get(env.get(host, ""), set()):
                    out.append(f"{where}: {host}:{port} is not a Service of the deployment")
            keys.add(env.get("N8N_ENCRYPTION_KEY", ""))
            args = n8n.get("args", [])
            taskboxes = [c for c in all_containers(pod) if is_taskbox(c)]
            if args[:1] == ["worker"]:
                workers += 1
                out += worker_problems(w, n8n, env, taskboxes, configmaps, taskbox_names)
            else:
                mains += 1
                if env.get("OFFLOAD_MANUAL_EXECUTIONS_TO_WORKERS") != "true":
                    out.append(f"{where}: main runs manual executions itself, so it needs "
                               "a runner: set OFFLOAD_MANUAL_EXECUTIONS_TO_WORKERS=true")
    if keys != {"secret:n8n-secrets/encryption-key"}:
        out.append(f"n8n processes do not share one N8N_ENCRYPTION_KEY: {sorted(keys)}")
    if mains != 1 or workers != 1:
        out.append(f"expected one n8n main and one worker Deployment, got {mains} and {workers}")
    return out


def worker_problems(workload: Doc, n8n: Doc, env: dict[str, str], taskboxes: list[Doc],
                    configmaps: dict[str, dict[str, str]],
                    taskbox_names: set[str]) -> list[str]:
    name = workload["metadata"]["name"]
    if len(taskboxes) != 1:
        return [f"{name}: {len(taskboxes)} taskbox containers in the worker pod, not 1"]
    out: list[str] = []
    tb = taskboxes[0]
    tenv = env_of(tb, configmaps)
    pod = pod_of(workload)
    if tb in pod.get("initContainers", []) and tb.get("restartPolicy") != "Always":
        out.append(f"{name}: taskbox is an init container that is not a sidecar")
    unknown = sorted(n for n in tenv if base_name(n, taskbox_names) not in taskbox_names
                     and n not in ALWAYS_PASSED)
    if unknown:
        out.append(f"{name}: variables taskbox does not read: {unknown}")
    if env.get("N8N_RUNNERS_BROKER_LISTEN_ADDRESS") != "127.0.0.1":
        out.append(f"{name}: the worker's broker is not pod-local (127.0.0.1)")
    broker = f"http://127.0.0.1:{env.get('N8N_RUNNERS_BROKER_PORT', '5679')}"
    if tenv.get("N8N_RUNNERS_TASK_BROKER_URI") != broker:
        out.append(f"{name}: taskbox connects to {tenv.get('N8N_RUNNERS_TASK_BROKER_URI')!r}, "
                   f"not its worker's broker {broker}")
    if "N8N_RUNNERS_AUTH_TOKEN" in tenv:
        out.append(f"{name}: taskbox gets the auth token in its environment; use _FILE")
    token_file = tenv.get("N8N_RUNNERS_AUTH_TOKEN_FILE", "")
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in tb.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    directory, _, file = token_file.rpartition("/")
    secret = volumes.get(mounts.get(directory, ""), {}).get("secret", {})
    paths = {i["path"]: i["key"] for i in secret.get("items", [])}
    key = paths.get(file, file if not secret.get("items") else None)
    if f"secret:{secret.get('secretName')}/{key}" != env.get("N8N_RUNNERS_AUTH_TOKEN"):
        out.append(f"{name}: taskbox's N8N_RUNNERS_AUTH_TOKEN_FILE {token_file!r} is not the "
                   "worker's N8N_RUNNERS_AUTH_TOKEN secret")
    if tenv.get("N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED") != "true":
        out.append(f"{name}: taskbox's health server is off")
    if tenv.get("N8N_RUNNERS_HEALTH_CHECK_SERVER_HOST") != "0.0.0.0":
        out.append(f"{name}: taskbox's health server listens on 127.0.0.1 only; the "
                   "kubelet's httpGet and Prometheus connect to the pod IP")
    health = int(tenv.get("N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT", Config().health.port))
    for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", READINESS_PATH)):
        get = (tb.get(kind) or {}).get("httpGet") or {}
        if get.get("path") != path or port_number(tb, get.get("port", -1)) != health:
            out.append(f"{name}: taskbox {kind} is not GET {path} on port {health}")
    notes = workload["spec"]["template"]["metadata"].get("annotations", {})
    if (notes.get("prometheus.io/scrape"), notes.get("prometheus.io/port"),
            notes.get("prometheus.io/path")) != ("true", str(health), "/metrics"):
        out.append(f"{name}: Prometheus annotations do not point at taskbox's /metrics")
    if float(tenv.get("N8N_RUNNERS_TASK_TIMEOUT", 60)) > \
            float(env.get("N8N_RUNNERS_TASK_TIMEOUT", 300)):
        out.append(f"{name}: taskbox's task timeout exceeds n8n's")
    grace = float(env.get("N8N_GRACEFUL_SHUTDOWN_TIMEOUT", 30)) + float(tenv.get(
        "N8N_RUNNERS_GRACEFUL_SHUTDOWN_TIMEOUT", Config().graceful_shutdown_timeout))
    if pod.get("terminationGracePeriodSeconds", 30) <= grace:
        out.append(f"{name}: terminationGracePeriodSeconds does not cover the worker's and "
                   f"taskbox's graceful shutdown ({grace:.0f} s)")
    uid = re.search(r"^ARG TASKBOX_UID=(\d+)$", DOCKERFILE.read_text(), re.MULTILINE)
    if uid is None or tb.get("securityContext", {}).get("runAsUser") != int(uid.group(1)):
        out.append(f"{name}: taskbox's runAsUser is not the image's TASKBOX_UID")
    return out


# --------------------------------------------------------------------------- tests


def test_manifests_pass_the_kubernetes_schema() -> None:
    for doc in manifests():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_schema_check_rejects_typos_and_missing_fields() -> None:
    worker = next(d for d in manifests() if d["metadata"]["name"] == "n8n-worker")
    typo = copy.deepcopy(worker)
    sc = pod_of(typo)["containers"][0]["securityContext"]
    sc["readOnlyRootFileSystem"] = sc.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)
    missing = copy.deepcopy(worker)
    del pod_of(missing)["containers"][0]["name"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(missing, K8S_VERSION, strict=True)


def test_the_objects_a_queue_deployment_needs() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in manifests()}
    assert kinds == {
        ("Secret", "n8n-secrets"), ("ConfigMap", "n8n-queue-env"),
        ("Service", "redis"), ("Deployment", "redis"),
        ("Service", "postgres"), ("StatefulSet", "postgres"),
        ("Service", "n8n"), ("Deployment", "n8n-main"), ("Deployment", "n8n-worker"),
    }


def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in manifest_files()} - {"secret.example.yaml"}


def test_manifests_agree_with_each_other() -> None:
    assert problems(manifests()) == []


def test_queue_mode_and_one_taskbox_per_worker() -> None:
    assert queue_problems(manifests(), taskbox_reads(), n8n_reads()) == []


def _container(docs: list[Doc], workload: str, container: str) -> Doc:
    w = next(d for d in docs if d["metadata"]["name"] == workload and "template" in d["spec"])
    return next(c for c in all_containers(pod_of(w)) if c["name"] == container)


def _env_item(c: Doc, name: str) -> Doc:
    return next(e for e in c["env"] if e["name"] == name)


def _set_env(workload: str, container: str, name: str, value: str) -> Callable[[list[Doc]], None]:
    def mutate(docs: list[Doc]) -> None:
        _env_item(_container(docs, workload, container), name)["value"] = value
    return mutate


def _rename_env(workload: str, container: str, name: str, new: str) \
        -> Callable[[list[Doc]], None]:
    def mutate(docs: list[Doc]) -> None:
        _env_item(_container(docs, workload, container), name)["name"] = new
    return mutate


def _security(workload: str, container: str, key: str, value: Any) \
        -> Callable[[list[Doc]], None]:
    def mutate(docs: list[Doc]) -> None:
        _container(docs, workload, container)["securityContext"][key] = value
    return mutate


def _drop_taskbox(docs: list[Doc]) -> None:
    w = next(d for d in docs if d["metadata"]["name"] == "n8n-worker")
    pod_of(w)["initContainers"] = []


def _offload_off(docs: list[Doc]) -> None:
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    cm["data"]["OFFLOAD_MANUAL_EXECUTIONS_TO_WORKERS"] = "false"


def _bad_selector(docs: list[Doc]) -> None:
    svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "n8n")
    svc["spec"]["selector"] = {"app.kubernetes.io/name": "n8n-mian"}


def _probe_port(docs: list[Doc]) -> None:
    _container(docs, "n8n-worker", "taskbox")["livenessProbe"]["httpGet"]["port"] = 5682


def _readiness_on_healthz(docs: list[Doc]) -> None:
    _container(docs, "n8n-worker", "taskbox")["readinessProbe"]["httpGet"]["path"] = "/healthz"


def _annotation(docs: list[Doc]) -> None:
    w = next(d for d in docs if d["metadata"]["name"] == "n8n-worker")
    w["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "5678"


def _secret_key(docs: list[Doc]) -> None:
    item = _env_item(_container(docs, "n8n-main", "n8n"), "N8N_ENCRYPTION_KEY")
    item["valueFrom"]["secretKeyRef"]["key"] = "encryption_key"


@pytest.mark.parametrize(("mutate", "expected"), [
    (_security("n8n-worker", "taskbox", "readOnlyRootFilesystem", False),
     "taskbox: readOnlyRootFilesystem is not true"),
    (_security("n8n-main", "n8n", "allowPrivilegeEscalation", True),
     "n8n-main/n8n: allowPrivilegeEscalation is not false"),
    (_security("postgres", "postgres", "runAsUser", 0), "postgres/postgres: not pinned"),
    (_security("redis", "redis", "seccompProfile", {"type": "Unconfined"}),
     "redis/redis: seccompProfile"),
    (_rename_env("n8n-worker", "taskbox", "TASKBOX_MEMORY_LIMIT_MB", "TASKBOX_MEMORY_LIMIT"),
     "variables taskbox does not read: ['TASKBOX_MEMORY_LIMIT']"),
    (_rename_env("n8n-worker", "n8n-worker", "QUEUE_HEALTH_CHECK_ACTIVE",
                 "QUEUE_HEALTH_CHECK_ENABLED"),
     "variables n8n does not read: ['QUEUE_HEALTH_CHECK_ENABLED']"),
    (_set_env("n8n-worker", "taskbox", "N8N_RUNNERS_TASK_BROKER_URI", "http://n8n:5679"),
     "not its worker's broker"),
    (_set_env("n8n-worker", "n8n-worker", "N8N_RUNNERS_BROKER_LISTEN_ADDRESS", "0.0.0.0"),
     "broker is not pod-local"),
    (_set_env("n8n-worker", "taskbox", "N8N_RUNNERS_HEALTH_CHECK_SERVER_HOST", "127.0.0.1"),
     "connect to the pod IP"),
    (_set_env("n8n-worker", "taskbox", "N8N_RUNNERS_AUTH_TOKEN_FILE", "/run/secrets/x/t"),
     "is not the worker's N8N_RUNNERS_AUTH_TOKEN secret"),
    (_set_env("n8n-worker", "taskbox", "N8N_RUNNERS_TASK_TIMEOUT", "120"),
     "task timeout exceeds n8n's"),
    (_drop_taskbox, "0 taskbox containers in the worker pod"),
    (_offload_off, "set OFFLOAD_MANUAL_EXECUTIONS_TO_WORKERS=true"),
    (_bad_selector, "Service n8n: selects 0 workloads"),
    (_probe_port, "livenessProbe port 5682 is not a port of the container"),
    (_readiness_on_healthz, "readinessProbe is not GET /healthz/readiness"),
    (_annotation, "Prometheus annotations"),
    (_secret_key, "missing secret key n8n-secrets/encryption_key"),
])
def test_checks_catch_broken_manifests(mutate: Callable[[list[Doc]], None],
                                       expected: str) -> None:
    docs = copy.deepcopy(manifests())
    mutate(docs)
    found = problems(docs) + queue_problems(docs, taskbox_reads(), n8n_reads())
    assert any(expected in p for p in found), found


def test_n8n_env_snapshot_matches_the_installed_n8n() -> None:
    """The snapshot is what n8n 2.41.1 reads; refresh it if the install says otherwise."""
    package = N8N_MODULES / "n8n/package.json"
    if not package.exists():
        pytest.skip(f"no n8n install under {N8N_MODULES} (../shared/n8n-e2e/install.sh)")
    assert '"version": "2.41.1"' in package.read_text()
    scanned = scan_n8n_env(N8N_MODULES)
    assert scanned == n8n_reads(), (
        f"only in the install: {sorted(scanned - n8n_reads())[:10]}; only in the snapshot: "
        f"{sorted(n8n_reads() - scanned)[:10]}")


# --------------------------------------------------------------------------- compose


def queue_compose() -> dict[str, Any]:
    text = QUEUE_COMPOSE.read_text()
    data = load_yaml_subset(text)
    assert data == yaml.safe_load(text), "the subset reader and PyYAML disagree"
    assert isinstance(data, dict)
    return data


def test_queue_compose_file() -> None:
    services = queue_compose()["services"]
    workers = sorted(n for n in services if n.startswith("n8n-worker-"))
    assert len(workers) == 2 and {"redis", "postgres", "n8n"} <= set(services)
    n8n_names, tb_names = n8n_reads(), taskbox_reads()
    keys = set()
    for name in ("n8n", *workers):
        env = services[name]["environment"]
        assert all(isinstance(v, str) for v in env.values()), name
        assert not sorted(n for n in env if n not in n8n_names), name
        assert env["EXECUTIONS_MODE"] == "queue" and env["DB_TYPE"] == "postgresdb"
        assert env["QUEUE_BULL_REDIS_HOST"] == "redis" and env["DB_POSTGRESDB_HOST"] == "postgres"
        assert env["OFFLOAD_MANUAL_EXECUTIONS_TO_WORKERS"] == "true"
        keys.add(env["N8N_ENCRYPTION_KEY"])
    assert len(keys) == 1 and next(iter(keys)).startswith("${N8N_ENCRYPTION_KEY:?")
    for worker in workers:
        wenv = services[worker]["environment"]
        assert services[worker]["command"][:1] == ["worker"]
        assert wenv["N8N_RUNNERS_BROKER_LISTEN_ADDRESS"] == "127.0.0.1"
        runner = services[worker.replace("n8n-worker-", "taskbox-")]
        assert runner["network_mode"] == f"service:{worker}", "shares the worker's loopback"
        env = runner["environment"]
        assert not set(env) - tb_names - ALWAYS_PASSED
        assert env["N8N_RUNNERS_TASK_BROKER_URI"] == \
            f"http://127.0.0.1:{wenv['N8N_RUNNERS_BROKER_PORT']}"
        assert env["N8N_RUNNERS_AUTH_TOKEN"] == wenv["N8N_RUNNERS_AUTH_TOKEN"]
        assert float(env["N8N_RUNNERS_TASK_TIMEOUT"]) <= float(wenv["N8N_RUNNERS_TASK_TIMEOUT"])
        assert runner["healthcheck"]["test"] == ["CMD", IMAGE_VENV_BIN + "taskbox", "connect",
                                                 "--check"]
        assert runner["depends_on"][worker]["condition"] == "service_healthy"
        user = str(runner["user"]).split(":")[0]
        assert user.isdigit() and user != "0"
        assert runner["read_only"] is True and runner["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in runner["security_opt"]



def _compose_value(value: str) -> str:
    """Compose's interpolation for what these files use: ${X:-default}, ${X:?error}."""
    def sub(m: re.Match[str]) -> str:
        return m.group(2) if m.group(1) == ":-" else "from-the-env-file"
    return re.sub(r"\$\{[A-Z0-9_]+(:-|:\?)([^}]*)\}", sub, value)


def test_taskbox_accepts_the_sidecar_and_compose_environments(tmp_path: Path) -> None:
    """Not only the names: taskbox's own parser takes every value as given."""
    docs = manifests()
    sidecar = _container(docs, "n8n-worker", "taskbox")
    env = env_of(sidecar, {})
    token = tmp_path / "runners-auth-token"
    token.write_text("s3cret\n")
    env["N8N_RUNNERS_AUTH_TOKEN_FILE"] = str(token)
    config = Config.from_env(env)
    assert config.auth_token == "s3cret"
    assert config.broker_uri == "http://127.0.0.1:5679"
    assert (config.health.enabled, config.health.host, config.health.port) == \
        (True, "0.0.0.0", 5681)
    assert config.max_concurrency == 5 and config.limits.memory_limit_mb == 512
    assert config.limits.stdlib_allow and config.limits.require_layers
    for name, service in queue_compose()["services"].items():
        if name.startswith("taskbox-"):
            values = {k: _compose_value(v) for k, v in service["environment"].items()}
            parsed = Config.from_env(values)
            assert parsed.broker_host_port == "127.0.0.1:5679"
            assert parsed.auth_token == "from-the-env-file"
