"""The Helm chart, rendered and linted offline by Helm's own Go SDK (helm-python-sdk), every core
object checked against the Kubernetes API schemas (kubernetes-validate), the custom resources
against the CRDs of KEDA and the Prometheus Operator, and the whole checked against the system
table: every service deployed, every worker scaled on the lag of exactly the consumers it runs.
Every container, the NATS chart's and the hook jobs' included, has resources and runs unprivileged;
values.schema.json turns a mistyped value away before anything renders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from maskline.contracts import subjects as table
from maskline.infra import helm as chart_system
from maskline.infra.embedded import triton

pytestmark = pytest.mark.unit
CHART = Path(__file__).resolve().parents[2] / "infra" / "helm" / "maskline"
CRDS = Path(__file__).resolve().parent / "crds"
WORKLOADS = ("Deployment", "StatefulSet", "Job")
KUBERNETES = "1.33.0"
WORKERS = [s for s in table.SERVICES if s != table.GATEWAY]


class _NoDuplicateKeys(yaml.SafeLoader):
    """A mapping with a key twice is an error (PyYAML would keep the last one silently)."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    duplicated = {k for k in keys if keys.count(k) > 1}
    assert not duplicated, f"duplicate keys {duplicated} at {node.start_mark}"
    return loader.construct_mapping(node, deep)


_NoDuplicateKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


@cache
def rendered(overrides: str = "") -> tuple[dict[str, Any], ...]:
    values = yaml.safe_load(overrides) if overrides else {}
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name="prod", namespace="maskline")
    docs = []
    for name, text in sorted(files.items()):
        if name.endswith(".yaml") and "/tests/" not in name:
            docs += [doc for doc in yaml.load_all(text, Loader=_NoDuplicateKeys) if doc]
    return tuple(docs)


def of_kind(kind: str, overrides: str = "") -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in rendered(overrides) if doc["kind"] == kind}


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in CRDS.glob("*.yaml"):
        # Go's regexp takes a flag after `^` (the PrometheusRule CRD's `^(?i)(abort|warn)?$`);
        # Python's re wants global flags first.
        crd = yaml.safe_load(path.read_text().replace("^(?i)", "(?i)^"))
        for version in crd["spec"]["versions"]:
            found[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = version["schema"][
                "openAPIV3Schema"
            ]
    return found


def test_the_charts_system_file_is_generated_from_the_system_table() -> None:
    assert chart_system.main(["--check"]) == 0
    assert set(chart_system.system()["services"]) == set(table.SERVICES)


def test_helm_lint_passes() -> None:
    report = helm.lint(CHART, strict=True)
    # Helm's severities: 1 info ("icon is recommended"), 2 warning, 3 error; strict fails on warnings.
    assert not [m for m in report["messages"] if m["severity"] >= 2], report["messages"]
    assert report["total_charts_linted"] == 1


def test_every_object_is_valid_for_its_api() -> None:
    checked: dict[str, int] = {}
    for doc in rendered():
        key = (doc["apiVersion"], doc["kind"])
        if key in crd_schemas():
            jsonschema.validate(doc, crd_schemas()[key])
        else:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        checked[doc["kind"]] = checked.get(doc["kind"], 0) + 1
    for kind in (
        "Deployment",
        "StatefulSet",
        "Job",
        "ScaledObject",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ):
        assert checked.get(kind), kind
    assert checked["Deployment"] == len(table.SERVICES) + 1  # every service and Triton


def test_a_broken_object_is_caught_by_the_validators() -> None:
    deployment = dict(next(iter(of_kind("Deployment").values())))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**deployment, "spec": {**deployment["spec"], "replicas": "two"}}, KUBERNETES, strict=True)
    scaled = next(iter(of_kind("ScaledObject").values()))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {**scaled, "spec": {"triggers": scaled["spec"]["triggers"]}}, crd_schemas()[("keda.sh/v1alpha1", "ScaledObject")]
        )


def test_each_worker_scales_on_the_lag_of_exactly_the_consumers_it_runs() -> None:
    scaled = of_kind("ScaledObject")
    assert set(scaled) == {f"prod-maskline-{w}" for w in WORKERS}
    for worker in WORKERS:
        spec = scaled[f"prod-maskline-{worker}"]["spec"]
        assert spec["scaleTargetRef"]["name"] == f"prod-maskline-{worker}"
        triggers = {(t["metadata"]["stream"], t["metadata"]["consumer"]) for t in spec["triggers"]}
        assert triggers == {(stream, durable) for stream, durable, _ in table.durables_of(worker)}, worker
        assert all(t["type"] == "nats-jetstream" and t["metadata"]["account"] == "$G" for t in spec["triggers"])
        assert all(t["metadata"]["natsServerMonitoringEndpoint"].startswith("prod-nats-headless.") for t in spec["triggers"])
        # infer and quantize hold no pod while there is nothing to do
        assert (spec["minReplicaCount"] == 0) == (worker in ("infer", "quantize", "train")), worker
    assert "replicas" not in of_kind("Deployment")["prod-maskline-infer"]["spec"]  # KEDA owns it


def deployment_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for name, deployment in of_kind("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        yield name, pod, pod["containers"][0]


def test_probes_disruption_budgets_and_least_privilege_secrets() -> None:
    budgets = {
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for b in of_kind("PodDisruptionBudget").values()
        if "app.kubernetes.io/component" in b["spec"]["selector"]["matchLabels"]
    }
    for name, pod, container in deployment_containers():
        service = name.removeprefix("prod-maskline-")
        assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(container), name
        assert service in budgets, name
        if service in table.SERVICES:
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["MASKLINE_NATS_URL"].count("nats://") == 3 and env["MASKLINE_STREAM_REPLICAS"] == "3"
            assert env["MASKLINE_MINIO_ACCESS_KEY"] == f"maskline-{service}"
            items = {i["key"] for v in pod["volumes"] if "secret" in v for i in v["secret"].get("items", [])}
            assert {f"{service}.nk", f"minio-{service}.secret"} <= items, name
            assert not {i for i in items if i.endswith(".nk")} - {f"{service}.nk"}, name  # no other identity's seed
            assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    triton = of_kind("Deployment")["prod-maskline-triton"]["spec"]["template"]["spec"]["containers"][0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--model-repository=s3://minio.storage.svc.cluster.local:9000/maskline/triton" in triton["args"]


def workload_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every container of every workload, init containers included: (workload/container, pod, container)."""
    for doc in rendered():
        if doc["kind"] in WORKLOADS:
            pod = doc["spec"]["template"]["spec"]
            for container in pod.get("initContainers", []) + pod["containers"]:
                yield f"{doc['metadata']['name']}/{container['name']}", pod, container


def test_every_container_requests_cpu_and_memory_and_has_a_memory_limit() -> None:
    names = set()
    for name, _, container in workload_containers():
        names.add(name)
        resources = container.get("resources") or {}
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), name
        assert "memory" in resources.get("limits", {}), name  # the OOM boundary; CPU limits only throttle
    # the NATS chart's pods and the hook jobs too, not only maskline's own Deployments
    assert {"prod-nats/nats", "prod-nats/reloader", "prod-nats/prom-exporter"} <= names
    assert {"prod-maskline-minio-setup/mc", "prod-maskline-provision/provision", "prod-maskline-triton/triton"} <= names
    # NATS as its chart recommends: requests equal to limits (Go sizes GOMAXPROCS from the CPU limit),
    # its sidecars too, so the pod is of the Guaranteed QoS class
    for name, _, container in workload_containers():
        if name.startswith("prod-nats/"):
            assert container["resources"]["requests"] == container["resources"]["limits"], name
        if name == "prod-nats/nats":
            assert {"name": "GOMEMLIMIT", "value": "3GiB"} in container["env"]


def test_every_container_runs_unprivileged_as_a_non_root_user() -> None:
    for name, pod, container in workload_containers():
        # a container's own setting wins over the pod's
        effective = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        assert effective.get("runAsNonRoot") is True, name
        assert effective.get("runAsUser", 1) != 0 and effective.get("runAsGroup", 1) != 0, name
        assert effective.get("allowPrivilegeEscalation") is False, name
        assert effective.get("capabilities", {}).get("drop") == ["ALL"], name
        assert effective.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert effective.get("readOnlyRootFilesystem") is True, name
        assert not effective.get("privileged"), name
    # a read-only root needs a writable /tmp: every maskline container and Triton gets an emptyDir there
    for name, pod, container in workload_containers():
        if not name.startswith("prod-nats/"):  # NATS writes only its pid (emptyDir) and /data (PVC)
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"]), name


def test_the_values_schema_accepts_the_defaults_and_turns_mistakes_away() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))
    # the schema knows every service of the system table, and nothing else
    assert set(schema["properties"]["services"]["required"]) == set(table.SERVICES)
    assert set(schema["properties"]["services"]["properties"]) == set(table.SERVICES)
    assert set(schema["properties"]["autoscaling"]["properties"]["workers"]["required"]) == set(WORKERS)
    # Helm itself checks the values against it before rendering anything
    for bad, where in (
        ({"services": {"ingest": {"replicas": "two"}}}, "/services/ingest/replicas"),
        ({"autoscalling": {"enabled": False}}, "autoscalling"),  # a typo is not silently ignored
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"services": {"merge": {"resources": {"requests": {"cpu": "2 cores"}}}}}, "/services/merge/resources/requests/cpu"),
        ({"jobs": {"provision": {"resources": {"limits": None}}}}, "/jobs/provision/resources"),  # null drops a default
    ):
        with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as refused:
            chart.render(bad, name="prod", namespace="maskline")
        assert where in str(refused.value), (bad, str(refused.value))


def test_the_alerting_rules_ship_as_a_prometheus_rule_and_can_be_turned_off() -> None:
    rule = of_kind("PrometheusRule")["prod-maskline"]
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())  # the file compose loads too
    labelled = of_kind("PrometheusRule", "prometheusRule: {labels: {release: kube-prometheus-stack}}")["prod-maskline"]
    assert labelled["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not of_kind("PrometheusRule", "prometheusRule: {enabled: false}")


def test_nats_runs_the_official_chart_as_an_r3_jetstream_cluster_with_maskline_users() -> None:
    nats = of_kind("StatefulSet")["prod-nats"]
    assert nats["spec"]["replicas"] == 3
    config = of_kind("ConfigMap")["prod-nats-config"]["data"]["nats.conf"]
    assert "include auth/auth.conf;" in config and '"jetstream"' in config and '"cluster"' in config
    volumes = {v["name"]: v for v in nats["spec"]["template"]["spec"]["volumes"]}
    assert volumes["maskline-auth"]["secret"]["secretName"] == "maskline-nats-auth"
    assert "prod-nats" in of_kind("PodMonitor")


def test_network_policies_admit_only_what_each_component_needs() -> None:
    policies = of_kind("NetworkPolicy")
    assert policies["prod-maskline-default-deny"]["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in policies["prod-maskline-default-deny"]["spec"]
    triton = policies["prod-maskline-triton"]["spec"]["ingress"]
    assert triton[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "infer"
    nats_ports = {p["port"] for rule in policies["prod-maskline-nats"]["spec"]["ingress"] for p in rule["ports"]}
    assert nats_ports == {4222, 6222, 7777, 8222}
    assert set(of_kind("ServiceMonitor")) == {"prod-maskline-gateway", "prod-maskline-triton"}
    workers = of_kind("PodMonitor")["prod-maskline-workers"]["spec"]
    components = next(e["values"] for e in workers["selector"]["matchExpressions"] if e["key"] == "app.kubernetes.io/component")
    assert set(components) == set(WORKERS) and workers["podMetricsEndpoints"][0]["port"] == "health"


def test_autoscaling_and_monitoring_can_be_turned_off() -> None:
    kinds = {
        doc["kind"]
        for doc in rendered("autoscaling: {enabled: false}\nserviceMonitor: {enabled: false}\nnetworkPolicy: {enabled: false}")
    }
    assert not kinds & {"ScaledObject", "ServiceMonitor", "NetworkPolicy"}
    deployments = of_kind("Deployment", "autoscaling: {enabled: false}")
    assert deployments["prod-maskline-infer"]["spec"]["replicas"] == 1


def test_tracing_sends_every_services_and_tritons_spans_to_one_collector() -> None:
    assert all(
        "--trace-config" not in " ".join(d["spec"]["template"]["spec"]["containers"][0].get("args", []))
        for d in rendered()
        if d["kind"] == "Deployment"
    )
    endpoint = "http://otel-collector.observability:4318"
    deployments = of_kind("Deployment", f"tracing: {{otlpEndpoint: '{endpoint}/'}}")
    assert "prod-maskline-triton" in deployments
    for name, doc in deployments.items():
        container = doc["spec"]["template"]["spec"]["containers"][0]
        if name.endswith("-triton"):  # the same flags the embedded stack gives its Triton
            expected = triton.tracing_flags({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
            assert [a for a in container["args"] if a.startswith("--trace-config")] == expected
        else:
            assert {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": f"{endpoint}/"} in container["env"], name
