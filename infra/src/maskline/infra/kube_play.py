"""The Helm chart's own rendering, started as pods with `podman kube play`, as close to a cluster as
a machine without Kubernetes allows; then a segmentation through the gateway pod, then everything
removed.

    python -m maskline.infra.kube_play           # render, play, wait ready, smoke, remove
    python -m maskline.infra.kube_play --keep    # and leave the pods running

The chart is rendered by Helm's own Go SDK (helm-python-sdk, as tests/infra/test_helm.py does) with
two values changed: images from `localhost` (built by `./dev images`) and no MinIO setup job (the
S3 stand-in of compose.podman.yaml, run as a pod, makes its users itself). podman 4.3 plays Pods,
Deployments, PersistentVolumeClaims and ConfigMaps only, with hostPath, emptyDir and PVC volumes and
no Services; this module turns the rendered objects into what it plays, and says each change:
- every Deployment, the NATS StatefulSet (one pod per ordinal, named as Kubernetes names them) and
  the provision Job become one Pod each with the template's containers, probes, security context
  and resources; replicas beyond the first, rollout strategies and the Job's retries are not played;
- Secret and ConfigMap volumes become host folders holding exactly the items the pod asks for
  (mode and owner as `defaultMode` and `fsGroup` say); emptyDir and the StatefulSet's volume claims
  become host folders owned by the pod's user; `secretKeyRef` and `fieldRef` env values are
  resolved here, `$(VAR)` references expanded;
- Services become `hostAliases`: every pod gets each Service's names (short, namespaced, FQDN, and
  the headless per-pod names) pointing at the backing pod's fixed address on a network of its own;
- containers whose image cannot be built here (the NATS config reloader and exporter) are left
  out, as is the GPU resource; readiness probes, which podman does not run, are run from here.
Not exercised: Services and their load balancing, KEDA's ScaledObjects, HorizontalPodAutoscalers,
PodDisruptionBudgets, NetworkPolicies, ServiceMonitors/PodMonitors and PrometheusRules (no API
server, no controllers), the hook ordering Helm would apply.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from maskline.infra import images
from maskline.infra.compose import smoke
from maskline.infra.local_credentials import API_KEYS, IMAGE_GID, SECRETS, ensure_credentials

CHART = images.ROOT / "infra" / "helm" / "maskline"
RELEASE, NAMESPACE = "prod", "maskline"
NETWORK, SUBNET_PREFIX = "maskline-kube", "10.89.77"
HOME = images.ROOT / "build" / "kube"
RESULTS = images.ROOT / "docs" / "bench" / "kube-play.json"
#: The chart's values with what this machine changes: images from localhost, Triton on the CPU
#: (its GPU resource is dropped too), no MinIO setup job (the S3 stand-in makes its users).
VALUES = {
    "image": {"registry": "localhost"},
    "store": {"setupJob": False},
    "triton": {"image": images.image("triton-cpu"), "instanceKind": "KIND_CPU"},
}
#: Images the chart names that are built here under another name; a container whose image is neither
#: built here nor listed is left out.
LOCAL = {"nats:": images.image("nats")}
S3_POD = "minio"
S3_POD_IP = f"{SUBNET_PREFIX}.10"
S3_NAMES = ("minio.storage.svc.cluster.local", "minio.storage")
READY_S = 240.0


@dataclass
class Pod:
    name: str
    labels: dict[str, str]
    spec: dict[str, Any]
    ip: str = ""
    one_shot: bool = False
    hostnames: list[str] = field(default_factory=list)


def rendered() -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(VALUES, name=RELEASE, namespace=NAMESPACE)
    docs: list[dict[str, Any]] = []
    for name, text in sorted(files.items()):
        if name.endswith(".yaml") and "/tests/" not in name:
            docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def secrets_store() -> dict[str, dict[str, bytes]]:
    """The Secrets values.yaml tells an operator to create, from `maskline credentials`' folder."""
    return {
        "maskline-credentials": {p.name: p.read_bytes() for p in (SECRETS / "credentials").iterdir()},
        "maskline-nats-auth": {"auth.conf": (SECRETS / "nats-auth.conf").read_bytes()},
        "maskline-minio-policies": {p.name: p.read_bytes() for p in (SECRETS / "minio").iterdir()},
        "maskline-api-keys": {"api-keys": API_KEYS.encode()},
    }


def local_image(image: str) -> str | None:
    for prefix, local in LOCAL.items():
        if image.startswith(prefix):
            return local
    return image if image.startswith("localhost/maskline-") else None


def pods_of(docs: list[dict[str, Any]]) -> list[Pod]:
    pods = []
    for doc in docs:
        kind, name, spec = doc["kind"], doc["metadata"]["name"], doc.get("spec", {})
        if kind not in ("Deployment", "StatefulSet", "Job"):
            continue
        template = spec["template"]
        labels = dict(template["metadata"].get("labels", {}))
        if kind == "StatefulSet":
            for ordinal in range(int(spec.get("replicas", 1))):
                pod = Pod(f"{name}-{ordinal}", labels, copy.deepcopy(template["spec"]))
                pod.hostnames = headless_names(pod.name, spec["serviceName"])
                claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])]
                pod.spec.setdefault("volumes", []).extend({"name": c, "emptyDir": {}} for c in claims)
                pods.append(pod)
        else:
            pods.append(Pod(name, labels, copy.deepcopy(template["spec"]), one_shot=kind == "Job"))
    return pods


def cluster_names(name: str) -> list[str]:
    """What a name resolves as in the release's namespace: short, namespaced, fully qualified."""
    return [name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc.cluster.local"]


def headless_names(pod: str, service: str) -> list[str]:
    return cluster_names(f"{pod}.{service}")


def addressed(pods: list[Pod]) -> list[Pod]:
    """Each pod's fixed address on the network (the S3 pod has its own): what hostAliases name."""
    for number, pod in enumerate(p for p in pods if p.name != S3_POD):
        pod.ip = f"{SUBNET_PREFIX}.{number + 11}"
    return pods


def service_names(docs: list[dict[str, Any]], pods: list[Pod]) -> dict[str, str]:
    """Every name a Service gives → the address of the first pod it selects."""
    names: dict[str, str] = {name: S3_POD_IP for name in S3_NAMES}
    for pod in pods:
        names.update({host: pod.ip for host in pod.hostnames})
    for doc in docs:
        if doc["kind"] != "Service":
            continue
        selector = doc["spec"].get("selector", {})
        backing = next((p for p in pods if selector and selector.items() <= p.labels.items()), None)
        if backing is not None:
            svc = doc["metadata"]["name"]
            names.update({n: backing.ip for n in cluster_names(svc)})
    return names


def owner_of(spec: dict[str, Any]) -> int:
    context = spec.get("securityContext", {})
    return int(context.get("fsGroup") or context.get("runAsUser") or 0)


def host_folder(pod: Pod, volume: str) -> Path:
    """A folder of the pod's own (0750, its user's group): other host users cannot look in."""
    folder = HOME / pod.name / volume
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    os.chmod(folder.parent, 0o750)
    os.chown(folder, owner_of(pod.spec), owner_of(pod.spec))
    return folder


def write_private(target: Path, data: bytes, mode: int, owner: int) -> None:
    """Created with its final mode (never readable by others, not even for a moment), then owned."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chown(target, owner, owner)


def materialize(pod: Pod, store: dict[str, dict[str, bytes]], config_maps: dict[str, dict[str, str]]) -> None:
    """Secret, ConfigMap and emptyDir volumes as host folders podman can mount."""
    uid = owner_of(pod.spec)
    for volume in pod.spec.get("volumes", []):
        name = volume["name"]
        files: dict[str, bytes] = {}
        mode = 0o644
        kind = "secret" if "secret" in volume else "configMap" if "configMap" in volume else ""
        if kind:
            ref = volume[kind]
            source = (
                store[ref["secretName"]] if kind == "secret" else {k: v.encode() for k, v in config_maps[ref["name"]].items()}
            )
            items = ref.get("items") or [{"key": k, "path": k} for k in source]
            files = {item["path"]: source[item["key"]] for item in items}
            mode = int(ref.get("defaultMode", 0o644))
        folder = host_folder(pod, name)
        for path, data in files.items():
            write_private(folder / path, data, mode, uid)
        pod.spec["volumes"] = [v for v in pod.spec["volumes"] if v["name"] != name] + [
            {"name": name, "hostPath": {"path": str(folder), "type": "Directory"}}
        ]


def resolve_env(pod: Pod, store: dict[str, dict[str, bytes]]) -> None:
    for container in pod.spec["containers"]:
        values: dict[str, str] = {}
        for env in container.get("env", []):
            source = env.pop("valueFrom", None)
            if source and "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env["value"] = store[ref["name"]][ref["key"]].decode().strip()
            elif source and "fieldRef" in source:
                if source["fieldRef"]["fieldPath"] != "metadata.name":
                    raise SystemExit(f"{pod.name}: env {env['name']} from {source['fieldRef']['fieldPath']} is not resolved here")
                env["value"] = pod.name
            env["value"] = expand(str(env.get("value", "")), values)
            values[env["name"]] = env["value"]


def expand(value: str, known: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` references to variables defined earlier in the container's env."""
    return re.sub(r"\$\((\w+)\)", lambda m: known.get(m.group(1), m.group(0)), value)


def playable(pod: Pod, names: dict[str, str]) -> dict[str, Any]:
    spec = copy.deepcopy(pod.spec)
    kept = []
    for container in spec["containers"]:
        image = local_image(container["image"])
        if image is None:
            continue
        container["image"] = image
        # podman publishes every containerPort on the host (a second pod with :4222 cannot start);
        # pods reach each other on the network's addresses, so nothing is published.
        container.pop("ports", None)
        container.pop("readinessProbe", None)  # podman does not run it: run_probe() does
        container.pop("startupProbe", None)
        container.get("resources", {}).get("limits", {}).pop("nvidia.com/gpu", None)
        kept.append(container)
    spec["containers"] = kept
    spec.pop("initContainers", None)
    spec["restartPolicy"] = "Never" if pod.one_shot else "Always"
    by_ip: dict[str, list[str]] = {}
    for name, ip in names.items():
        by_ip.setdefault(ip, []).append(name)
    spec["hostAliases"] = [{"ip": ip, "hostnames": sorted(hosts)} for ip, hosts in sorted(by_ip.items())]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod.name, "labels": pod.labels}, "spec": spec}


def s3_pod() -> Pod:
    mount = [
        {"name": "policies", "mountPath": "/setup/policies", "readOnly": True},
        {"name": "secrets", "mountPath": "/setup/secrets", "readOnly": True},
    ]
    container = {"name": "s3", "image": images.image("s3"), "args": ["--port", "9000"], "volumeMounts": mount}
    spec = {
        "containers": [container],
        "securityContext": {"runAsUser": IMAGE_GID, "fsGroup": IMAGE_GID},
        "volumes": [
            {"name": "policies", "secret": {"secretName": "maskline-minio-policies", "defaultMode": 0o400}},
            {"name": "secrets", "secret": {"secretName": "maskline-credentials", "defaultMode": 0o400}},
        ],
    }
    return Pod(S3_POD, {"app": "s3-stand-in"}, spec, ip=S3_POD_IP)


def play(pod: Pod, manifest: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=HOME, delete=False) as handle:
        yaml.safe_dump(manifest, handle)
    done = images.podman("kube", "play", "--network", NETWORK, "--ip", pod.ip, handle.name, capture=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"podman kube play {pod.name}: {done.stderr.strip()}")


def port_of(container: dict[str, Any], port: str | int) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    return next(int(p["containerPort"]) for p in container.get("ports", []) if p.get("name") == port)


def run_probe(pod: Pod, container: dict[str, Any], probe: dict[str, Any]) -> bool:
    """A readiness probe as the kubelet runs it: httpGet or tcpSocket on the pod's address, or exec."""
    try:
        if "httpGet" in probe:
            url = f"http://{pod.ip}:{port_of(container, probe['httpGet']['port'])}{probe['httpGet'].get('path', '/')}"
            with urllib.request.urlopen(url, timeout=3) as answer:
                return bool(200 <= answer.status < 400)
        if "tcpSocket" in probe:
            with socket.create_connection((pod.ip, port_of(container, probe["tcpSocket"]["port"])), 3):
                return True
        if "exec" in probe:
            done = images.podman("exec", f"{pod.name}-{container['name']}", *probe["exec"]["command"], capture=True, check=False)
            return done.returncode == 0
    except OSError:
        return False
    return True


def state_of(pod: Pod) -> str:
    listed = images.podman("pod", "inspect", pod.name, capture=True, check=False).stdout
    found = json.loads(listed) if listed.strip() else {}
    found = found[0] if isinstance(found, list) and found else found
    return str(found.get("State", "?")) if found else "missing"


def exit_code(pod: Pod, container: str) -> int | None:
    out = images.podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", f"{pod.name}-{container}", capture=True)
    status, code = out.stdout.split()
    return int(code) if status == "exited" else None


def wait_ready(pods: list[Pod], probes: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]], started: float) -> float:
    """Until every pod's readiness probes pass (a one-shot pod: its containers exited 0)."""
    while True:
        waiting = []
        for pod in pods:
            if pod.one_shot:
                codes = [exit_code(pod, c["name"]) for c in pod.spec["containers"]]
                if any(code not in (None, 0) for code in codes):
                    raise SystemExit(f"{pod.name} failed (exit codes {codes}):\n{logs(pod)}")
                if any(code is None for code in codes):
                    waiting.append(pod.name)
            elif not all(run_probe(pod, c, p) for c, p in probes[pod.name]):
                waiting.append(pod.name)
        if not waiting:
            return round(time.monotonic() - started, 1)
        if time.monotonic() - started > READY_S:
            raise SystemExit(
                f"not ready within {READY_S:.0f} s: {waiting}\n" + "\n".join(logs(p) for p in pods if p.name in waiting)
            )
        time.sleep(2)


def logs(pod: Pod) -> str:
    out = []
    for container in pod.spec["containers"]:
        tail = images.podman("logs", "--tail", "15", f"{pod.name}-{container['name']}", capture=True, check=False)
        out.append(f"--- {pod.name}/{container['name']}\n{tail.stdout}{tail.stderr}")
    return "\n".join(out)


def remove(pods: list[str]) -> None:
    for name in pods:
        images.podman("pod", "rm", "--force", "--time", "10", name, capture=True, check=False)
    images.podman("network", "rm", "--force", NETWORK, capture=True, check=False)
    shutil.rmtree(HOME, ignore_errors=True)


def up() -> tuple[list[Pod], dict[str, Any]]:
    docs = rendered()
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    store = secrets_store()
    pods = addressed([s3_pod(), *pods_of(docs)])
    names = service_names(docs, pods)
    probes = {
        p.name: [(c, c["readinessProbe"]) for c in p.spec["containers"] if "readinessProbe" in c and local_image(c["image"])]
        for p in pods
    }
    remove([p.name for p in pods])
    HOME.mkdir(parents=True, exist_ok=True)
    images.podman("network", "create", "--subnet", f"{SUBNET_PREFIX}.0/24", NETWORK, capture=True)
    manifests = {}
    for pod in pods:
        resolve_env(pod, store)
        materialize(pod, store, config_maps)
        manifests[pod.name] = playable(pod, names)
    # In the order a cluster would settle into: storage and the bus, the hook job, then the rest.
    waves = [
        [p for p in pods if p.name == S3_POD or p.name.startswith(f"{RELEASE}-nats-")],
        [p for p in pods if p.one_shot],
        [p for p in pods if p.name != S3_POD and not p.one_shot and not p.name.startswith(f"{RELEASE}-nats-")],
    ]
    started = time.monotonic()
    ready = {}
    for number, wave in enumerate(waves):
        for pod in wave:
            play(pod, manifests[pod.name])
        ready[f"wave_{number + 1}_s"] = wait_ready(wave, probes, started)
        print(f"ready: {', '.join(p.name for p in wave)} ({ready[f'wave_{number + 1}_s']} s)", flush=True)
    report = {"pods": {p.name: state_of(p) for p in pods}, "ready": ready, "probes_run_here": sum(map(len, probes.values()))}
    return pods, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskline.infra.kube_play", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the pods running")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    ensure_credentials()
    images.ensure((*images.TARGETS, "nats", "s3"))
    # Named before anything is played, so that a failure half-way still removes what was started.
    names = [S3_POD, *(p.name for p in pods_of(rendered()))]
    try:
        pods, report = up()
        gateway = next(p for p in pods if p.name == f"{RELEASE}-maskline-gateway")
        url = f"http://{gateway.ip}:8080"
        a, b = smoke.clients(url)
        try:
            report["smoke"] = {"segment": smoke.check_segment(a, b), "tenant_refused": smoke.check_tenant_refused(a, b)}
        finally:
            a.close()
            b.close()
        print(f"through {url}: {report['smoke']}", flush=True)
    finally:
        if not args.keep:
            remove(names)
    report = {**images.run_header("python -m maskline.infra.kube_play"), **report}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
