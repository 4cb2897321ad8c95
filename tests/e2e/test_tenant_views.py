"""Every route of the gateway, asked by one tenant about another's things (issue 24, must-have 2).

The routes come from the gateway's own OpenAPI document, so a new route is asked too; a path or
query parameter this test has no value for fails it until one is added below. tenant-c (the
victim) owns a job, a model, a dataset, a federation, a webhook and a dead letter, each named with
a marker; tenant-b (no operator) asks every route with tenant-c's names and ids. A read may answer
nothing of tenant-c's; no answer may hold a marker tenant-b did not send itself; nothing answers
5xx; and afterwards every one of tenant-c's things is as it was.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

from maskline.client import JsonClient
from maskline.contracts.subjects import PLATFORM_TENANT
from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from tests.e2e.conftest import AS_ANSWERED
from tests.e2e.test_bus import png
from tests.e2e.test_model_merge import perturbed
from tests.e2e.test_segmentation import png_bytes
from tests.e2e.test_trust_seams import LABELS, envelope, publish

pytestmark = pytest.mark.e2e
METHODS = ("get", "post", "put", "delete", "patch")


@dataclass
class Victim:
    job: str
    filename: str
    model: str
    version: int
    weights_sha256: str
    dataset: str
    federation: str
    hook: str
    letter_job: str
    letter_seq: int
    input_path: str
    run: str
    experiment: str
    user: str
    login: str
    key_id: str

    @property
    def markers(self) -> list[str]:
        return [
            self.job,
            self.filename,
            self.model,
            self.weights_sha256,
            self.dataset,
            self.federation,
            self.hook,
            self.letter_job,
            self.run,
            self.experiment,
            self.user,
            self.login,
            self.key_id,
        ]


@pytest.fixture(scope="module")
def victim(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[JsonClient, Victim]]:
    c = JsonClient(stack.gateway_url, api_key="key-c", timeout=120, retry=AS_ANSWERED)
    r = uuid.uuid4().hex[:8]
    filename = f"victim-{r}.png"
    job = c.submit(png(200), filename=filename, wait=60)
    assert job["status"] == "completed", job
    model = c.register_model(
        perturbed(tmp_path_factory.mktemp("victim"), 107), name=f"victim-model-{r}", labels=LABELS, input_size=(128, 128)
    )
    dataset = f"victim-ds-{r}"
    c.upload_dataset_file(dataset, "images", png(201), "v.png")
    c.upload_dataset_file(dataset, "masks", png(202), "v.png")
    run = c.start_federation(
        name=f"victim-fed-{r}",
        model={"name": "shapes-unet", "version": 1, "owner": PLATFORM_TENANT},
        sites=["tenant-a"],
        deadline_s=3600,
    )
    hook = f"victim-hook-{r}"
    c.http.put("/v1/webhooks", json={"url": f"http://127.0.0.1:9/{hook}"}).raise_for_status()
    letter_job = f"victim-letter-{r}"
    asyncio.run(
        publish(stack, "partner-c", "seg.v1.requested.tenant-c", envelope("seg.v1.requested", "tenant-c", letter_job, {"x": 1}))
    )
    wait_until(lambda: any(d["job_id"] == letter_job for d in c.dead_letters()), 30, "the victim's dead letter")
    seq = next(d["seq"] for d in c.dead_letters() if d["job_id"] == letter_job)
    inputs = [f["path"] for f in c.files("inputs")["files"] if f["path"].startswith(job["id"])]
    image, mask = shapes.sample(np.random.default_rng(5), 64)
    c.upload_dataset_file(f"victim-train-{r}", "images", png_bytes(image), "t.png")
    c.upload_dataset_file(f"victim-train-{r}", "masks", png_bytes(mask), "t.png")
    experiment = f"victim-exp-{r}"
    trained = c.train(
        name=f"victim-trained-{r}",
        dataset=f"victim-train-{r}",
        base={"name": "shapes-unet", "version": 1, "owner": PLATFORM_TENANT},
        hyperparameters={"steps": 2, "batch": 1, "validation_share": 0.0},
        experiment=experiment,
    )
    assert c.wait_job(trained["id"], timeout=120)["status"] == "completed"
    login, password = f"victim-{r}@c.example", "a victim's long password"
    user = c.http.post("/v1/users", json={"login": login, "role": "member", "password": password}).raise_for_status().json()
    signed = httpx.post(f"{stack.gateway_url}/v1/sign-in", json={"login": login, "password": password}).raise_for_status()
    person = {
        "Cookie": f"__Host-maskline-session={signed.cookies['__Host-maskline-session']}",
        "X-CSRF-Token": signed.json()["csrf_token"],
    }
    key = httpx.post(f"{stack.gateway_url}/v1/me/keys", json={"name": "victim"}, headers=person).raise_for_status().json()
    yield (
        c,
        Victim(
            job=job["id"],
            filename=filename,
            model=model["name"],
            version=model["version"],
            weights_sha256=model["weights"]["sha256"],
            dataset=dataset,
            federation=run["id"],
            hook=hook,
            letter_job=letter_job,
            letter_seq=seq,
            input_path=inputs[0],
            run=trained["id"],
            experiment=experiment,
            user=user["id"],
            login=login,
            key_id=key["id"],
        ),
    )
    c.http.delete("/v1/webhooks")
    c.stop_federation(run["id"])
    c.close()


def values(v: Victim) -> dict[str, Any]:
    """tenant-c's names and ids, by the parameter (or body field) that takes them."""
    return {
        "job_id": v.job,
        "replay_id": v.job,
        "job": v.job,
        "jobs": v.job,
        "artifact": "mask",
        "name": v.model,
        "version": v.version,
        "versions": str(v.version),
        "owner": "tenant-c",
        "grantee": "tenant-a",
        "alias": "stable",
        "dataset": v.dataset,
        "image": "v.png",
        "federation": v.federation,
        "round": 1,
        "samples": 1,
        "metrics": "{}",
        "kind": "step",
        "part": "images",
        "filename": "v.png",
        "sha256": v.weights_sha256,
        "seq": v.letter_seq,
        "area": "inputs",
        "path": v.input_path,
        "format": "coco",
        "limit": 500,
        "wait": 0,
        "layer": None,
        "image_url": None,
        "dataset_image": f"{v.dataset}/v.png",
        "url": "http://127.0.0.1:9/attacker",
        "sites": ["tenant-b"],
        "model": {"name": v.model, "version": v.version, "owner": "tenant-c"},
        "models": [{"name": v.model, "version": v.version, "owner": "tenant-c"}] * 2,
        "state": "granted",
        "run": v.run,
        "experiment": v.experiment,
        "base": {"name": v.model, "version": v.version, "owner": "tenant-c"},
        "hours": 24,
        "window": 24,
        "user": v.user,
        "key_id": v.key_id,
        "login": v.login,
        "next": "/segment",
        "code": "x",
        "error": None,
    }


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def fill(doc: dict[str, Any], schema: dict[str, Any], known: dict[str, Any], depth: int = 0) -> Any:
    """A body the schema accepts, with tenant-c's names wherever a field takes one."""
    schema = resolve(doc, schema)
    for option in schema.get("anyOf", schema.get("oneOf", [])):
        if resolve(doc, option).get("type") != "null":
            return fill(doc, option, known, depth)
    kind = schema.get("type")
    if kind == "object" and depth < 4:
        props = schema.get("properties", {})
        return {
            name: known[name] if name in known else fill(doc, prop, known, depth + 1)
            for name, prop in props.items()
            if name in schema.get("required", []) or name in known
        }
    if kind == "array":
        return [fill(doc, schema.get("items", {}), known, depth + 1)]
    if "enum" in schema:
        return schema["enum"][0]
    return {"integer": 1, "number": 1.0, "boolean": False, "string": "x"}.get(str(kind), "x")


@dataclass
class Asked:
    method: str
    url: str
    sent: str
    status: int
    body: str


def ask(http: httpx.Client, doc: dict[str, Any], path: str, method: str, op: dict[str, Any], known: dict[str, Any]) -> Asked:
    params: dict[str, Any] = {}
    url = path
    for p in op.get("parameters", []):
        if p["in"] not in ("path", "query"):
            continue
        assert p["name"] in known, f"{method.upper()} {path}: no value for parameter {p['name']!r}: add one to values()"
        value = known[p["name"]]
        if p["in"] == "path":
            url = url.replace("{" + p["name"] + "}", str(value))
        elif value is not None:
            params[p["name"]] = value
    kwargs: dict[str, Any] = {"params": params}
    sent = url + json.dumps(params)
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body = fill(doc, content["application/json"]["schema"], known)
        kwargs["json"], sent = body, sent + json.dumps(body)
    elif "multipart/form-data" in content:
        fields = resolve(doc, content["multipart/form-data"]["schema"]).get("properties", {})
        form = {k: str(known[k]) for k in fields if k in known and not isinstance(known[k], dict | list) and known[k] is not None}
        files = {k: ("x.png", png(3), "image/png") for k, f in fields.items() if "binary" in json.dumps(f)}
        form = {k: v for k, v in form.items() if k not in files}
        kwargs["data"], kwargs["files"], sent = form, files, sent + json.dumps(form)
    elif method != "get":
        kwargs["content"] = png(4)  # a raw body: an image, weights, an update
    if path.endswith("/events"):  # server-sent events: a 404 answers at once, a stream would not
        kwargs["timeout"] = 10
    response = http.request(method.upper(), url, **kwargs)
    return Asked(method, url, sent, response.status_code, response.text)


def test_every_route_asked_by_another_tenant_shows_and_changes_nothing_of_the_first(
    stack: Stack, victim: tuple[JsonClient, Victim], other_tenant: JsonClient
) -> None:
    owner, v = victim
    doc = other_tenant.http.get("/schema/openapi.json").json()
    known = values(v)
    operations = [(path, m, op) for path, item in doc["paths"].items() for m, op in item.items() if m in METHODS]
    assert len(operations) >= 70
    reads = [o for o in operations if o[1] == "get"]
    writes = [o for o in operations if o[1] != "get"]
    leaks, failures = [], []
    for path, method, op in reads + writes:  # reads first: afterwards tenant-b may hold things of its own named alike
        asked = ask(other_tenant.http, doc, path, method, op, known)
        if asked.status >= 500:
            failures.append((method, asked.url, asked.status, asked.body[:200]))
        strict = method == "get" and asked.status < 300
        found = [m for m in v.markers if m in asked.body and (strict or m not in asked.sent)]
        if found:
            leaks.append((method, asked.url, asked.status, found))
    other_tenant.http.delete("/v1/webhooks")  # what the sweep may have set for tenant-b itself
    assert failures == [], failures
    assert leaks == [], leaks
    # ... and tenant-c's things are as they were.
    assert owner.status(v.job)["status"] == "completed" and owner.status(v.job)["filename"] == v.filename
    assert owner.get_model(v.model, v.version)["weights"]["sha256"] == v.weights_sha256
    assert owner.dataset(v.dataset)["images"] == ["images/v.png"]
    assert owner.federation(v.federation)["status"] == "running"
    assert owner.http.get("/v1/webhooks").json()["url"].endswith(v.hook)
    assert any(d["seq"] == v.letter_seq for d in owner.dead_letters())
    assert owner.run(v.run)["run"] == v.run and [r["run"] for r in owner.runs(v.experiment)] == [v.run]
    assert {u["id"]: u["role"] for u in owner.http.get("/v1/users").json()}[v.user] == "member"
    assert [u["keys"] for u in owner.http.get("/v1/users").json() if u["id"] == v.user] == [1]
    grants = [g for g in owner.access() if g["model"] == v.model]
    assert all(g["state"] in ("requested", "withdrawn") and g["grantee"] == "tenant-b" for g in grants)  # never granted
