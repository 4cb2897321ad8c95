"""What `python -m maskline.infra.kube_play` makes of the chart's rendering before podman plays it
(the playing itself needs podman and the images: `./dev kube-play`, docs/deploy.md)."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from maskline.contracts.subjects import SERVICES
from maskline.infra import kube_play

pytestmark = pytest.mark.unit


@cache
def converted() -> tuple[list[dict[str, Any]], list[kube_play.Pod], dict[str, str]]:
    docs = kube_play.rendered()
    pods = kube_play.addressed([kube_play.s3_pod(), *kube_play.pods_of(docs)])
    return docs, pods, kube_play.service_names(docs, pods)


def test_every_workload_of_the_chart_becomes_a_pod() -> None:
    _, pods, _ = converted()
    names = {p.name for p in pods}
    assert {f"prod-maskline-{s}" for s in SERVICES} <= names
    assert {"prod-nats-0", "prod-nats-1", "prod-nats-2", "prod-maskline-triton", "prod-maskline-provision"} <= names
    assert [p.name for p in pods if p.one_shot] == ["prod-maskline-provision"]


def test_every_service_name_the_pods_use_points_at_a_pod() -> None:
    docs, pods, names = converted()
    addresses = {p.ip for p in pods}
    assert set(names.values()) <= addresses
    env = " ".join(str(e.get("value", "")) for p in pods for c in p.spec["containers"] for e in c.get("env", []))
    for host in (
        "prod-nats-0.prod-nats-headless.maskline.svc.cluster.local",
        "prod-maskline-triton",
        "minio.storage.svc.cluster.local",
    ):
        assert host in names and host.split(".")[0] in env
    services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service" and d["spec"].get("selector")]
    assert all(name in names for name in services)


def test_the_played_pods_hold_only_local_images_and_no_gpu() -> None:
    _, pods, names = converted()
    for pod in pods:
        manifest = kube_play.playable(pod, names)
        images = [c["image"] for c in manifest["spec"]["containers"]]
        assert images and all(i.startswith("localhost/maskline-") for i in images), (pod.name, images)
        limits = [c.get("resources", {}).get("limits", {}) for c in manifest["spec"]["containers"]]
        assert not any("nvidia.com/gpu" in limit for limit in limits)
        assert not any("ports" in c or "readinessProbe" in c for c in manifest["spec"]["containers"])
        assert {a["ip"] for a in manifest["spec"]["hostAliases"]} == set(names.values())


def test_environment_references_are_expanded_as_kubernetes_does() -> None:
    assert kube_play.expand("$(POD_NAME)", {"POD_NAME": "prod-nats-1"}) == "prod-nats-1"
    assert kube_play.expand("$(UNKNOWN)", {}) == "$(UNKNOWN)"
