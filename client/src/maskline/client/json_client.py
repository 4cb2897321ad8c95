"""The raw-JSON client: every answer as the dict the gateway sent (the CLI, benchmarks, wire-format tests).

Its operations are the typed clients' `Calls` (one place for paths and bodies), sent once, with
the answer left as JSON.
"""

from __future__ import annotations

import json
import mimetypes
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from maskline.client.retries import RetryingTransport, RetryPolicy
from maskline.client.typed import FILENAMES, ApiError, Call, Calls, FileChunks, raise_for_problem, request_options
from maskline.contracts import routes
from maskline.contracts.account_v1 import Role
from maskline.contracts.http_v1 import EvaluateBody, PromoteBody, RolloutBody, UserBody
from maskline.contracts.model_v1 import RollbackGuard
from maskline.contracts.subjects import FINAL_STATUSES


class JsonClient:
    """Every call goes through the clients' one retry policy (`retries.py`): POSTs carry an
    Idempotency-Key, refusals wait their Retry-After, and only what is safe is sent again."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        api_key: str = "dev-key",
        timeout: float = 180.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._connection = (base_url, api_key, timeout)
        self.http = self._http(retry or RetryPolicy())

    def _http(self, retry: RetryPolicy) -> httpx.Client:
        base_url, api_key, timeout = self._connection
        headers = {"Authorization": f"Bearer {api_key}"}
        return httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=RetryingTransport(retry))

    def _check(self, response: httpx.Response) -> httpx.Response:
        raise_for_problem(response)
        return response

    def _send(self, call: Call[Any]) -> httpx.Response:
        return self._check(self.http.request(call.method, call.path, **request_options(call)))

    def _json(self, call: Call[Any]) -> Any:
        return self._send(call).json()

    def submit(self, image: Path | bytes, *, filename: str = "image.png", wait: float = 0.0, **options: Any) -> dict[str, Any]:
        """`options` are the form fields of `POST /v1/segmentations` as they are (`tta=True`, `model=...`)."""
        data = image.read_bytes() if isinstance(image, Path) else image
        name = image.name if isinstance(image, Path) else filename
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        form = {k: str(v) for k, v in options.items() if v is not None}
        response = self.http.post(
            routes.SEGMENTATIONS, params={"wait": wait}, files={"image": (name, data, content_type)}, data=form
        )
        return dict(self._check(response).json())

    def get_model(self, name: str, version: int, owner: str | None = None) -> dict[str, Any]:
        return dict(self._json(Calls.model(name, version, owner)))

    def status(self, job_id: str) -> dict[str, Any]:
        return dict(self._json(Calls.status(job_id)))

    def artifact(self, job_id: str, name: str) -> bytes:
        return self._send(Calls.artifact(job_id, name)).content

    def download(self, job: dict[str, Any], folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {name: folder / FILENAMES.get(name, name) for name in job.get("artifacts", {})}
        for name, path in paths.items():
            path.write_bytes(self.artifact(job["id"], name))
        return paths

    def audit(self, job_id: str) -> dict[str, Any]:
        return dict(self._json(Calls.audit(job_id)))

    def models(self) -> list[dict[str, Any]]:
        return list(self._json(Calls.models()))

    def register_model(
        self,
        weights: Path,
        *,
        name: str,
        labels: list[str],
        input_size: tuple[int, int],
        description: str = "",
        architecture: str = "",
        architecture_kwargs: dict[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
        decoder: Path | None = None,
        **described: Any,
    ) -> dict[str, Any]:
        """Stream the weights (any size up to the server's model limit, checksum verified), then
        register them. `described`: format, output, output_kind, preprocessing (`Calls.register_model`).
        `decoder`: a SAM-format version's prompt decoder (ONNX); `weights` is then its image encoder."""
        uploaded = self.upload_weights(weights, progress)
        if decoder is not None:
            described["decoder_sha256"] = self.upload_weights(decoder, progress)["sha256"]
        call = Calls.register_model(
            weights_sha256=uploaded["sha256"],
            name=name,
            labels=labels,
            input_size=input_size,
            description=description,
            architecture=architecture,
            architecture_kwargs=architecture_kwargs,
            **described,
        )
        return dict(self._json(call))

    def upload_weights(self, weights: Path, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        chunks = FileChunks(weights, progress)
        return dict(self._json(Calls.upload_weights(chunks, chunks.sha256())))

    def upload_dataset_file(self, dataset: str, part: str, data: bytes, filename: str) -> dict[str, Any]:
        """part: `images` or `masks` (a mask has the same stem as its image, .png, class id per pixel)."""
        return dict(self._json(Calls.upload_dataset_file(dataset, part, data, filename)))

    def dataset(self, dataset: str) -> dict[str, Any]:
        return dict(self._json(Calls.dataset(dataset)))

    def dataset_manifest(self, dataset: str) -> dict[str, Any]:
        return dict(self._json(Calls.dataset_manifest(dataset)))

    def expand_dataset(self, dataset: str, **options: Any) -> dict[str, Any]:
        body = {k: v for k, v in options.items() if v is not None}
        return dict(self._check(self.http.post(routes.fill(routes.DATASET_EXPAND, dataset=dataset), json=body)).json())

    def segment_dataset(
        self,
        dataset: str,
        *,
        max_images: int = 1000,
        timeout: float = 1800.0,
        on_done: Callable[[int, int], None] | None = None,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """A dataset run: each image of one of your datasets segmented from where it is stored (not
        uploaded again), as a segmentation job of its own; `options` as in `submit`. A refusal over a
        limit (429, 503) waits its Retry-After, for up to `timeout` in all, and is sent again under
        the same Idempotency-Key, so no image runs twice. One entry per image, in the dataset's order: the job's final view with
        `image` added, or, for an image refused outright (413, 422: too large, options it cannot
        run), `image`, `status` "refused" and the `error` (the problem); the others still run."""
        images = sorted(name.removeprefix("images/") for name in self.dataset(dataset)["images"])[:max_images]
        run = uuid.uuid4().hex[:12]
        fields = {k: (None, str(v)) for k, v in options.items() if v is not None}
        started: list[tuple[str, dict[str, Any]]] = []
        # A run is patient: over a limit, it waits as long as the whole run may take.
        with self._http(RetryPolicy(attempts=1_000_000, timeout_s=timeout)) as patient:
            for image in images:
                form = {**fields, "dataset_image": (None, f"{dataset}/{image}")}  # multipart, as the form asks
                headers = {"Idempotency-Key": f"dataset-run-{run}-{image}"}
                response = patient.post(routes.SEGMENTATIONS, files=form, headers=headers)
                try:
                    started.append((image, self._check(response).json()))
                except ApiError as exc:
                    if exc.status not in (413, 422):
                        raise  # not about this image (auth, limits past the deadline, an outage): stop the run
                    started.append((image, {"status": "refused", "error": exc.problem}))
        done = []
        for image, job in started:
            final = self.wait_job(job["id"], timeout=timeout) if "id" in job else job
            done.append({**final, "image": image})
            if on_done is not None:
                on_done(len(done), len(started))
        return done

    def export_segmentations(self, job_ids: list[str], format: str = "coco") -> bytes:
        """Several segmentations in one file, in one of `http_v1.EXPORT_FORMATS`."""
        params = {"jobs": ",".join(job_ids), "format": format}
        return self._check(self.http.get(routes.EXPORTS, params=params)).content

    def merge_models(self, models: list[tuple[str, int]], *, name: str, method: str = "avg", **options: Any) -> dict[str, Any]:
        body = {
            "models": [{"name": n, "version": v} for n, v in models],
            "name": name,
            "method": method,
            **{k: v for k, v in options.items() if v is not None},
        }
        return dict(self._check(self.http.post(routes.MERGES, json=body)).json())

    def quantize(self, model: str, version: int, *, dataset: str, owner: str | None = None, **options: Any) -> dict[str, Any]:
        """Start a quantization job; `options` as in `POST /v1/models/quantizations` (name = the result's name);
        `owner`: whose model (the platform's, or one shared with you)."""
        ref = {"name": model, "version": version, **({"owner": owner} if owner else {})}
        body: dict[str, Any] = {"model": ref, "dataset": dataset}
        body.update({k: v for k, v in options.items() if v is not None})
        return dict(self._check(self.http.post(routes.QUANTIZATIONS, json=body)).json())

    def train(self, **body: Any) -> dict[str, Any]:
        """Start a training job; `body` as `POST /v1/trainings` (TrainBody): name, dataset, base or
        architecture, hyperparameters, evaluate_on, experiment."""
        return dict(self._check(self.http.post(routes.TRAININGS, json={k: v for k, v in body.items() if v is not None})).json())

    def sweep(self, **body: Any) -> dict[str, Any]:
        """Start a sweep; `body` as `POST /v1/sweeps` (SweepBody): training, space, trials, parallel, start_with."""
        return dict(self._check(self.http.post(routes.SWEEPS, json={k: v for k, v in body.items() if v is not None})).json())

    def sweep_trials(self, job_id: str) -> dict[str, Any]:
        return dict(self._check(self.http.get(routes.fill(routes.SWEEP, job_id=job_id))).json())

    def cancel_training(self, job_id: str) -> dict[str, Any]:
        return dict(self._json(Calls.cancel_training(job_id)))

    def runs(self, experiment: str | None = None) -> list[dict[str, Any]]:
        return list(self._json(Calls.runs(experiment)))

    def run(self, run: str) -> dict[str, Any]:
        return dict(self._json(Calls.run(run)))

    def compare_runs(self, runs: list[str]) -> dict[str, Any]:
        return dict(self._json(Calls.compare_runs(runs)))

    def reproduce(self, run: str) -> dict[str, Any]:
        return dict(self._json(Calls.reproduce(run)))

    def edit_layer(self, name: str, version: int, *, layer: str, **edit: Any) -> dict[str, Any]:
        body = {"layer": layer, **{k: v for k, v in edit.items() if v is not None}}
        return dict(self._check(self.http.post(routes.fill(routes.EDITS, name=name, version=version), json=body)).json())

    def report(self, name: str, version: int, kind: str, layer: str | None = None) -> dict[str, Any]:
        return dict(self._json(Calls.report(name, version, kind, layer)))

    def graph(self, name: str, version: int) -> dict[str, Any]:
        return dict(self._json(Calls.graph(name, version)))

    def services(self) -> dict[str, Any]:
        return dict(self._json(Calls.services()))

    def dead_letters(self, limit: int = 200) -> list[dict[str, Any]]:
        return list(self._json(Calls.dead_letters(limit)))

    def redrive(self, seq: int) -> dict[str, Any]:
        return dict(self._json(Calls.redrive(seq)))

    def files(self, area: str | None = None) -> dict[str, Any]:
        return dict(self._json(Calls.files(area)))

    def download_file(self, area: str, path: str) -> bytes:
        return self._send(Calls.download_file(area, path)).content

    def delete_file(self, area: str, path: str) -> None:
        self._send(Calls.delete_file(area, path))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._json(Calls.job(job_id)))

    def follow(self, job_id: str, timeout: float = 300.0) -> Iterator[dict[str, Any]]:
        """The job's view each time it changes, pushed by the gateway (server-sent events), until it
        is final or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with connect_sse(
            self.http, "GET", routes.fill(routes.JOB_EVENTS, job_id=job_id), timeout=httpx.Timeout(timeout, read=60.0)
        ) as source:
            if source.response.status_code != 200:
                source.response.read()
                raise_for_problem(source.response)
            for event in source.iter_sse():
                if event.data:
                    yield dict(json.loads(event.data))
                if event.event in FINAL_STATUSES or time.monotonic() > deadline:
                    return

    def wait_job(self, job_id: str, timeout: float = 300.0, on_progress: Any = None) -> dict[str, Any]:
        """The job's final view (or its last one after `timeout`), telling `on_progress` of each change."""
        job: dict[str, Any] = {}
        try:
            for job in self.follow(job_id, timeout):
                if on_progress is not None:
                    on_progress(job)
        except httpx.TransportError:  # the stream broke (a gateway restarted): the state is still there
            pass
        return job if job.get("status") in FINAL_STATUSES else self.job(job_id)

    def upload(self, data: bytes, content_type: str = "image/png") -> dict[str, Any]:
        """Hand over an image; the answer is the object reference to publish in a bus request."""
        return dict(self._json(Calls.upload(data, content_type)))

    def release_model(self, name: str, version: int) -> dict[str, Any]:
        return dict(self._json(Calls.release_model(name, version)))

    def start_federation(self, **body: Any) -> dict[str, Any]:
        """`POST /v1/federations` (FederationBody): name, model, sites, quorum, rounds, deadline_s, method, evaluate_on."""
        return dict(self._check(self.http.post(routes.FEDERATIONS, json=body)).json())

    def federation(self, federation: str, owner: str | None = None) -> dict[str, Any]:
        params = {"owner": owner} if owner else {}
        return dict(self._check(self.http.get(routes.fill(routes.FEDERATION, federation=federation), params=params)).json())

    def stop_federation(self, federation: str) -> dict[str, Any]:
        return dict(self._check(self.http.delete(routes.fill(routes.FEDERATION, federation=federation))).json())

    def federation_model(self, federation: str, owner: str | None = None) -> tuple[int, bytes]:
        """(round, weights) of the open round's global model, for a site to train."""
        params = {"owner": owner} if owner else {}
        response = self._check(self.http.get(routes.fill(routes.FEDERATION_MODEL, federation=federation), params=params))
        return int(response.headers["X-Round"]), response.content

    def submit_update(
        self,
        federation: str,
        round_: int,
        weights: bytes,
        *,
        samples: int,
        metrics: dict[str, float] | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """A site's trained weights for one round (the site is this client's tenant)."""
        params: dict[str, Any] = {"samples": samples, "metrics": json.dumps(metrics or {}), **({"owner": owner} if owner else {})}
        path = routes.fill(routes.FEDERATION_UPDATE, federation=federation, round=round_)
        return dict(self._check(self.http.put(path, params=params, content=weights)).json())

    def enrol_federation_training(self, federation: str, *, owner: str, dataset: str, **options: Any) -> dict[str, Any]:
        """A site: train every round of `owner`'s federation here on `dataset` (SiteTrainingBody:
        hyperparameters, architecture for round 1 from your own initialisation, checkpoint_every)."""
        path = routes.fill(routes.FEDERATION_TRAINING, federation=federation)
        body = {"dataset": dataset, **options}
        return dict(self._check(self.http.put(path, params={"owner": owner}, json=body)).json())

    def federation_training(self, federation: str, *, owner: str) -> dict[str, Any]:
        path = routes.fill(routes.FEDERATION_TRAINING, federation=federation)
        return dict(self._check(self.http.get(path, params={"owner": owner})).json())

    def withdraw_federation_training(self, federation: str, *, owner: str) -> dict[str, Any]:
        path = routes.fill(routes.FEDERATION_TRAINING, federation=federation)
        return dict(self._check(self.http.delete(path, params={"owner": owner})).json())

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._json(Calls.cancel(job_id)))

    def replay(self, job_id: str, wait: float = 60.0) -> dict[str, Any]:
        return dict(self._json(Calls.replay(job_id, wait)))

    def evaluate(self, name: str, version: int, *, dataset: str, owner: str | None = None, **options: Any) -> dict[str, Any]:
        """Start an evaluation job on one of your datasets with masks; `options`: max_images, boundary_tolerance."""
        return dict(self._json(Calls.evaluate(name, version, EvaluateBody(dataset=dataset, **options), owner)))

    def evaluations(self, name: str, version: int, owner: str | None = None) -> list[dict[str, Any]]:
        return list(self._json(Calls.evaluations(name, version, owner)))

    def compare(self, name: str, versions: list[int], dataset: str, owner: str | None = None) -> dict[str, Any]:
        return dict(self._json(Calls.compare(name, versions, dataset, owner)))

    def aliases(self, name: str, owner: str | None = None) -> list[dict[str, Any]]:
        return list(self._json(Calls.aliases(name, owner)))

    def alias(self, name: str, alias: str, owner: str | None = None) -> dict[str, Any]:
        return dict(self._json(Calls.alias(name, alias, owner)))

    def promote(self, name: str, alias: str, version: int, **rule: Any) -> dict[str, Any]:
        """`rule`: `require_metric`, `require_shadow_agreement`, `min_shadow_jobs` (PromoteBody)."""
        return dict(self._json(Calls.promote(name, alias, PromoteBody(version=version, **rule))))

    def rollback(self, name: str, alias: str) -> dict[str, Any]:
        return dict(self._json(Calls.rollback(name, alias)))

    def rollout(self, name: str, alias: str, **split: Any) -> dict[str, Any]:
        """`split`: `canary`, `canary_percent`, `shadow` (RolloutBody)."""
        return dict(self._json(Calls.rollout(name, alias, RolloutBody(**split))))

    def guard(self, name: str, alias: str, **rules: Any) -> dict[str, Any]:
        """`rules`: `on_drift`, `max_error_rate`, `min_shadow_agreement`, `min_jobs`, `cooldown_s` (RollbackGuard)."""
        return dict(self._json(Calls.guard(name, alias, RollbackGuard(**rules))))

    def unguard(self, name: str, alias: str) -> dict[str, Any]:
        return dict(self._json(Calls.unguard(name, alias)))

    def version_quality(self, name: str, version: int, owner: str | None = None, **query: int) -> dict[str, Any]:
        """`query`: `hours` (back from now) and `window` (hours compared with the reference)."""
        return dict(self._json(Calls.version_quality(name, version, owner, **query)))

    def delete_alias(self, name: str, alias: str) -> None:
        self._send(Calls.delete_alias(name, alias))

    def request_access(self, owner: str, name: str, note: str = "") -> dict[str, Any]:
        return dict(self._json(Calls.request_access(owner, name, note)))

    def withdraw_access(self, owner: str, name: str) -> dict[str, Any]:
        return dict(self._json(Calls.withdraw_access(owner, name)))

    def decide_access(self, name: str, grantee: str, state: str, note: str = "") -> dict[str, Any]:
        """state: granted, refused or revoked (you must own `name`)."""
        return dict(self._json(Calls.decide_access(name, grantee, state, note)))

    def users(self) -> list[dict[str, Any]]:
        return list(self._json(Calls.users()))

    def add_user(self, login: str, role: Role = "viewer", password: str | None = None) -> dict[str, Any]:
        return dict(self._json(Calls.add_user(UserBody(login=login, role=role, password=password))))

    def change_role(self, user: str, role: Role) -> dict[str, Any]:
        return dict(self._json(Calls.change_role(user, role)))

    def remove_user(self, user: str) -> None:
        self._send(Calls.remove_user(user))

    def access(self) -> list[dict[str, Any]]:
        return list(self._json(Calls.access()))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> JsonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
