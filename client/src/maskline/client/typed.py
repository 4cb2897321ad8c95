"""Typed clients of the HTTP API: `Client` (sync) and `AsyncClient` (asyncio).

Every operation is described once, in `Calls`, as a `Call` (method, path, body, the type its
answer decodes to); the two clients only differ in how they send it. The common operations are
methods of both clients; every other one is `client.send(Calls.<operation>(...))` (reports,
graph, fleet, dead letters, files, sharing: free-form JSON documents, decoded as dicts). Answers are the gateway's own views
(`maskline.contracts.http_v1`, `ModelVersion`), decoded with msgspec.

Retries are the transport's (`retries.py`, shared with the JSON client and the CLI): every POST
carries an Idempotency-Key, so a retry never starts a second job, and only what is safe is tried
again, after the answer's Retry-After or a backoff with jitter.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import msgspec

from maskline.client.retries import AsyncRetryingTransport, RetryingTransport, RetryPolicy
from maskline.contracts import routes, seg_v1
from maskline.contracts.account_v1 import Role
from maskline.contracts.http_v1 import (
    AliasView,
    ComparisonView,
    DatasetView,
    EvaluateBody,
    ExpandRequest,
    JobView,
    LayerEditBody,
    MergeBody,
    PromoteBody,
    QuantizeBody,
    ReplayView,
    RolloutBody,
    RunComparison,
    RunSummary,
    SegmentationView,
    SweepBody,
    TrainBody,
    UploadView,
    UserBody,
    UserView,
    VersionQuality,
    WeightsUploadView,
)
from maskline.contracts.model_v1 import Evaluation, ModelVersion, Preprocessing, RollbackGuard, VersionRef
from maskline.contracts.train_v1 import TrainingRun

T = TypeVar("T")
FILENAMES = {"mask": "mask.png", "overlay": "overlay.png", "regions": "regions.json"}


@dataclass(frozen=True)
class ClientSettings:
    url: str = "http://127.0.0.1:8080"
    api_key: str = "dev-key"
    timeout_s: float = 180.0
    retries: int = 5
    """How often a refused or failed call is tried again (only calls safe to repeat)."""
    backoff_s: float = 0.5
    """First wait after a connection error, growing with jitter (refusals wait their Retry-After)."""
    max_wait_s: float = 30.0

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.retries + 1, wait_initial_s=self.backoff_s, wait_max_s=self.max_wait_s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ClientSettings:
        """The CLI's variables: MASKLINE_URL, else MASKLINE_HOST / MASKLINE_PORT of the gateway;
        MASKLINE_API_KEY; MASKLINE_CLIENT_TIMEOUT_S and MASKLINE_CLIENT_RETRIES."""
        host = environ.get("MASKLINE_HOST", "127.0.0.1")
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # a listen-on-all address is not one to call
        url = environ.get("MASKLINE_URL") or f"http://{host}:{environ.get('MASKLINE_PORT', '8080')}"
        return cls(
            url=url,
            api_key=environ.get("MASKLINE_API_KEY", cls.api_key),
            timeout_s=float(environ.get("MASKLINE_CLIENT_TIMEOUT_S", cls.timeout_s)),
            retries=int(environ.get("MASKLINE_CLIENT_RETRIES", cls.retries)),
        )


class ApiError(Exception):
    """The gateway answered with a problem+json error (its `code` is stable; see docs/security.md)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(
            f"{status}: {problem.get('detail') or problem.get('title') or problem} {problem.get('extra') or ''}".rstrip()
        )
        self.status = status
        self.problem = problem

    @property
    def code(self) -> str | None:
        code = self.problem.get("code")
        return str(code) if code is not None else None


class FileChunks:
    """A file's bytes in chunks for a streamed upload, read afresh on every iteration (a retried
    request sends it again); `progress(sent, total)` follows each chunk (the CLI's progress bar)."""

    CHUNK = 1024 * 1024

    def __init__(self, path: Path, progress: Callable[[int, int], None] | None = None) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.progress = progress

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        with self.path.open("rb") as handle:
            while chunk := handle.read(self.CHUNK):
                sent += len(chunk)
                if self.progress:
                    self.progress(sent, self.size)
                yield chunk

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            while chunk := handle.read(self.CHUNK):
                digest.update(chunk)
        return digest.hexdigest()


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP operation, independent of how it is sent."""

    method: str
    path: str
    answer: Any
    """The type the JSON answer decodes to; `bytes` for a download."""
    accepted: Any = None
    """The type of a 202 answer, where it differs (the job of work still under way)."""
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    data: dict[str, str] | None = None
    files: dict[str, tuple[str | None, bytes, str]] | None = None
    content: bytes | Iterable[bytes] | None = None
    """A body as it is; an iterable is streamed (re-iterable, so a retry can send it again)."""
    headers: dict[str, str] = field(default_factory=dict)


def _form(options: seg_v1.SegmentationOptions) -> dict[str, str]:
    """SegmentationOptions as the multipart form of `POST /v1/segmentations`."""
    form = {
        "model": options.model,
        "outputs": ",".join(options.outputs),
        "overlay_alpha": str(options.overlay_alpha),
        "min_region_area": str(options.min_region_area),
    }
    for name in ("owner", "version", "precision", "alias"):
        value = getattr(options, name)
        if value is not None:
            form[name] = str(value)
    if options.tta is not None:
        tta = options.tta
        form |= {
            "tta": "true",
            "tta_variants": ",".join(tta.variants),
            "tta_angle": str(tta.angle),
            "tta_blur_sigma": str(tta.blur_sigma),
            "tta_fusion": tta.fusion,
        }
    if options.prompts is not None:
        form["prompts"] = msgspec.json.encode(options.prompts).decode()
    return form


class Calls:
    """Every operation the typed clients offer, as a `Call`: the one place paths and bodies are made."""

    @staticmethod
    def submit(
        image: bytes,
        *,
        filename: str = "image.png",
        options: seg_v1.SegmentationOptions | None = None,
        wait_s: float = 0.0,
        deadline_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> Call[SegmentationView]:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        form = _form(options or seg_v1.SegmentationOptions())
        if deadline_s is not None:
            form["deadline_s"] = str(deadline_s)
        return Call(
            "POST",
            routes.SEGMENTATIONS,
            SegmentationView,
            params={"wait": wait_s},
            data=form,
            files={"image": (filename, image, content_type)},
            headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex},
        )

    @staticmethod
    def status(job_id: str) -> Call[SegmentationView]:
        return Call("GET", routes.fill(routes.SEGMENTATION, job_id=job_id), SegmentationView)

    @staticmethod
    def cancel(job_id: str) -> Call[SegmentationView]:
        """Cancel a segmentation wherever it is (409 `job_finished` when it is over)."""
        return Call("DELETE", routes.fill(routes.SEGMENTATION, job_id=job_id), SegmentationView)

    @staticmethod
    def replay(job_id: str, wait_s: float = 60.0) -> Call[ReplayView]:
        """Re-run a completed segmentation from its audit record; the answer says which outputs match."""
        return Call("POST", routes.fill(routes.REPLAY, job_id=job_id), ReplayView, params={"wait": wait_s}, accepted=ReplayView)

    @staticmethod
    def artifact(job_id: str, name: str) -> Call[bytes]:
        return Call("GET", routes.fill(routes.SEGMENTATION_OUTPUT, job_id=job_id, artifact=name), bytes)

    @staticmethod
    def job(job_id: str) -> Call[JobView]:
        return Call("GET", routes.fill(routes.JOB, job_id=job_id), JobView)

    @staticmethod
    def models() -> Call[list[ModelVersion]]:
        return Call("GET", routes.MODELS, list[ModelVersion])

    @staticmethod
    def model(name: str, version: int, owner: str | None = None) -> Call[ModelVersion]:
        return Call(
            "GET",
            routes.fill(routes.MODEL_VERSION, name=name, version=version),
            ModelVersion,
            params={"owner": owner} if owner else {},
        )

    @staticmethod
    def upload_weights(chunks: FileChunks, sha256: str) -> Call[WeightsUploadView]:
        """Stream model weights of any size up to the server's model limit; the server checks the sha256."""
        headers = {"content-type": "application/octet-stream", "content-length": str(chunks.size)}
        return Call("PUT", routes.fill(routes.MODEL_WEIGHTS, sha256=sha256), WeightsUploadView, content=chunks, headers=headers)

    @staticmethod
    def register_model(
        weights: bytes | None = None,
        *,
        weights_sha256: str = "",
        name: str,
        labels: list[str],
        input_size: tuple[int, int],
        description: str = "",
        architecture: str = "",
        architecture_kwargs: dict[str, Any] | None = None,
        filename: str | None = None,
        format: str = "",
        output: str = "",
        output_kind: str = "logits",
        preprocessing: Preprocessing | None = None,
        decoder_sha256: str = "",
    ) -> Call[ModelVersion]:
        """`weights` in the request, or `weights_sha256` of weights streamed first (`upload_weights`).
        `decoder_sha256`: a SAM-format version's prompt decoder, streamed first (the weights are then
        its image encoder).
        `architecture`: `package.module:Class` that rebuilds the network (needed to quantize it).
        `format`: torchscript or onnx (empty: recognised from the file); `output`: the output that
        holds the class scores when there are several; `preprocessing`: resize, normalisation."""
        form = {
            "name": name,
            "labels": ",".join(labels),
            "input_height": str(input_size[0]),
            "input_width": str(input_size[1]),
            "description": description,
            "architecture": architecture,
            "architecture_kwargs": json.dumps(architecture_kwargs or {}),
            "format": format,
            "output": output,
            "output_kind": output_kind,
            "preprocessing": msgspec.json.encode(preprocessing or Preprocessing()).decode(),
        }
        if decoder_sha256:
            form["decoder_sha256"] = decoder_sha256
        files: dict[str, tuple[str | None, bytes, str]] = (
            {"weights": (filename or f"{name}.pt", weights, "application/octet-stream")}
            if weights is not None  # the form must be multipart either way: a field part without a file name
            else {"weights_sha256": (None, weights_sha256.encode(), "text/plain")}
        )
        return Call("POST", routes.MODELS, ModelVersion, accepted=JobView, data=form, files=files)

    @staticmethod
    def merge_models(body: MergeBody) -> Call[JobView]:
        return Call("POST", routes.MERGES, JobView, json=msgspec.to_builtins(body))

    @staticmethod
    def quantize(body: QuantizeBody) -> Call[JobView]:
        return Call("POST", routes.QUANTIZATIONS, JobView, json=msgspec.to_builtins(body))

    @staticmethod
    def train(body: TrainBody) -> Call[JobView]:
        """Fine-tune a version or train an architecture on one of your labelled datasets (a job)."""
        return Call("POST", routes.TRAININGS, JobView, json=msgspec.to_builtins(body))

    @staticmethod
    def sweep(body: SweepBody) -> Call[JobView]:
        """Trials of a training over a search space, sampled and pruned by Optuna (a job)."""
        return Call("POST", routes.SWEEPS, JobView, json=msgspec.to_builtins(body))

    @staticmethod
    def cancel_training(job_id: str) -> Call[JobView]:
        return Call("DELETE", routes.fill(routes.TRAINING, job_id=job_id), JobView)

    @staticmethod
    def runs(experiment: str | None = None) -> Call[list[RunSummary]]:
        return Call("GET", routes.RUNS, list[RunSummary], params={"experiment": experiment} if experiment else {})

    @staticmethod
    def run(run: str) -> Call[TrainingRun]:
        return Call("GET", routes.fill(routes.RUN, run=run), TrainingRun)

    @staticmethod
    def compare_runs(runs: list[str]) -> Call[RunComparison]:
        return Call("GET", routes.RUNS_COMPARE, RunComparison, params={"run": runs})

    @staticmethod
    def reproduce(run: str) -> Call[JobView]:
        return Call("POST", routes.fill(routes.RUN_REPRODUCE, run=run), JobView)

    @staticmethod
    def edit_layer(name: str, version: int, edit: LayerEditBody) -> Call[JobView]:
        return Call("POST", routes.fill(routes.EDITS, name=name, version=version), JobView, json=msgspec.to_builtins(edit))

    @staticmethod
    def release_model(name: str, version: int) -> Call[ModelVersion]:
        return Call("POST", routes.fill(routes.RELEASE, name=name, version=version), ModelVersion)

    @staticmethod
    def evaluate(name: str, version: int, body: EvaluateBody, owner: str | None = None) -> Call[JobView]:
        """Score a version on one of your labelled datasets (a job; its result: `evaluations`)."""
        params = {"owner": owner} if owner else {}
        return Call(
            "POST",
            routes.fill(routes.EVALUATIONS, name=name, version=version),
            JobView,
            params=params,
            json=msgspec.to_builtins(body),
        )

    @staticmethod
    def evaluations(name: str, version: int, owner: str | None = None) -> Call[list[Evaluation]]:
        params = {"owner": owner} if owner else {}
        return Call("GET", routes.fill(routes.EVALUATIONS, name=name, version=version), list[Evaluation], params=params)

    @staticmethod
    def compare(name: str, versions: Iterable[int], dataset: str, owner: str | None = None) -> Call[ComparisonView]:
        params = {"versions": ",".join(map(str, versions)), "dataset": dataset, **({"owner": owner} if owner else {})}
        return Call("GET", routes.fill(routes.COMPARE, name=name), ComparisonView, params=params)

    @staticmethod
    def aliases(name: str, owner: str | None = None) -> Call[list[AliasView]]:
        return Call("GET", routes.fill(routes.ALIASES, name=name), list[AliasView], params={"owner": owner} if owner else {})

    @staticmethod
    def alias(name: str, alias: str, owner: str | None = None) -> Call[AliasView]:
        return Call("GET", routes.fill(routes.ALIAS, name=name, alias=alias), AliasView, params={"owner": owner} if owner else {})

    @staticmethod
    def promote(name: str, alias: str, body: PromoteBody) -> Call[AliasView]:
        """Create the alias at `body.version` or move it there (with an optional promotion rule)."""
        return Call("PUT", routes.fill(routes.ALIAS, name=name, alias=alias), AliasView, json=msgspec.to_builtins(body))

    @staticmethod
    def rollback(name: str, alias: str) -> Call[AliasView]:
        return Call("POST", routes.fill(routes.ALIAS_ROLLBACK, name=name, alias=alias), AliasView)

    @staticmethod
    def rollout(name: str, alias: str, body: RolloutBody) -> Call[AliasView]:
        return Call("PUT", routes.fill(routes.ALIAS_ROLLOUT, name=name, alias=alias), AliasView, json=msgspec.to_builtins(body))

    @staticmethod
    def guard(name: str, alias: str, body: RollbackGuard) -> Call[AliasView]:
        """Let the alias roll itself back when a rule of the guard holds (drift, errors, shadow)."""
        return Call("PUT", routes.fill(routes.ALIAS_GUARD, name=name, alias=alias), AliasView, json=msgspec.to_builtins(body))

    @staticmethod
    def unguard(name: str, alias: str) -> Call[AliasView]:
        return Call("DELETE", routes.fill(routes.ALIAS_GUARD, name=name, alias=alias), AliasView)

    @staticmethod
    def version_quality(
        name: str, version: int, owner: str | None = None, hours: int = 168, window: int = 24
    ) -> Call[VersionQuality]:
        """A version on your jobs hour by hour, and its drift against your evaluation of it."""
        params: dict[str, Any] = {"hours": hours, "window": window, **({"owner": owner} if owner else {})}
        return Call("GET", routes.fill(routes.VERSION_QUALITY, name=name, version=version), VersionQuality, params=params)

    @staticmethod
    def delete_alias(name: str, alias: str) -> Call[None]:
        return Call("DELETE", routes.fill(routes.ALIAS, name=name, alias=alias), None)

    @staticmethod
    def report(name: str, version: int, kind: str, layer: str | None = None) -> Call[dict[str, Any]]:
        """`kind`: step, cross, calibrators or travel (free-form JSON documents)."""
        return Call(
            "GET",
            routes.fill(routes.REPORT, name=name, version=version, kind=kind),
            dict[str, Any],
            params={"layer": layer} if layer else {},
        )

    @staticmethod
    def graph(name: str, version: int) -> Call[dict[str, Any]]:
        return Call("GET", routes.fill(routes.GRAPH, name=name, version=version), dict[str, Any])

    @staticmethod
    def upload(data: bytes, content_type: str = "image/png") -> Call[UploadView]:
        """Hand over an image for a job published straight onto NATS (content-addressed: safe to repeat)."""
        return Call("POST", routes.UPLOADS, UploadView, content=data, headers={"content-type": content_type})

    @staticmethod
    def upload_dataset_file(dataset: str, part: str, data: bytes, filename: str) -> Call[dict[str, Any]]:
        """`part`: images or masks (a mask has its image's stem, PNG, a class id per pixel)."""
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        path = routes.fill(routes.DATASET_FILE, dataset=dataset, part=part, filename=filename)
        return Call("PUT", path, dict[str, Any], content=data, headers={"content-type": content_type})

    @staticmethod
    def dataset(dataset: str) -> Call[DatasetView]:
        return Call("GET", routes.fill(routes.DATASET, dataset=dataset), DatasetView)

    @staticmethod
    def dataset_manifest(dataset: str) -> Call[dict[str, Any]]:
        return Call("GET", routes.fill(routes.DATASET_MANIFEST, dataset=dataset), dict[str, Any])

    @staticmethod
    def expand_dataset(dataset: str, body: ExpandRequest) -> Call[JobView]:
        return Call("POST", routes.fill(routes.DATASET_EXPAND, dataset=dataset), JobView, json=msgspec.to_builtins(body))

    @staticmethod
    def audit(job_id: str) -> Call[dict[str, Any]]:
        return Call("GET", routes.AUDIT, dict[str, Any], params={"job": job_id})

    @staticmethod
    def services() -> Call[dict[str, Any]]:
        return Call("GET", routes.SERVICES, dict[str, Any])

    @staticmethod
    def dead_letters(limit: int = 200) -> Call[list[dict[str, Any]]]:
        return Call("GET", routes.DEAD_LETTERS, list[dict[str, Any]], params={"limit": limit})

    @staticmethod
    def redrive(seq: int) -> Call[dict[str, Any]]:
        return Call("POST", routes.fill(routes.REDRIVE, seq=seq), dict[str, Any])

    @staticmethod
    def files(area: str | None = None) -> Call[dict[str, Any]]:
        return Call("GET", routes.FILES, dict[str, Any], params={"area": area} if area else {})

    @staticmethod
    def download_file(area: str, path: str) -> Call[bytes]:
        return Call("GET", routes.fill(routes.FILE, area=area, path=path), bytes)

    @staticmethod
    def delete_file(area: str, path: str) -> Call[None]:
        return Call("DELETE", routes.fill(routes.FILE, area=area, path=path), None)

    @staticmethod
    def users() -> Call[list[UserView]]:
        """The people of your tenant (owners)."""
        return Call("GET", routes.USERS, list[UserView])

    @staticmethod
    def add_user(body: UserBody) -> Call[UserView]:
        return Call("POST", routes.USERS, UserView, json=msgspec.to_builtins(body))

    @staticmethod
    def change_role(user: str, role: Role) -> Call[UserView]:
        return Call("PUT", routes.fill(routes.USER_ROLE, user=user), UserView, json={"role": role})

    @staticmethod
    def remove_user(user: str) -> Call[None]:
        return Call("DELETE", routes.fill(routes.USER, user=user), None)

    @staticmethod
    def access() -> Call[list[dict[str, Any]]]:
        """Grants and requests you are part of, as owner or grantee."""
        return Call("GET", routes.ACCESS, list[dict[str, Any]])

    @staticmethod
    def request_access(owner: str, name: str, note: str = "") -> Call[dict[str, Any]]:
        return Call(
            "POST", routes.fill(routes.ACCESS_REQUESTS, name=name), dict[str, Any], params={"owner": owner}, json={"note": note}
        )

    @staticmethod
    def withdraw_access(owner: str, name: str) -> Call[dict[str, Any]]:
        return Call("DELETE", routes.fill(routes.ACCESS_REQUESTS, name=name), dict[str, Any], params={"owner": owner})

    @staticmethod
    def decide_access(name: str, grantee: str, state: str, note: str = "") -> Call[dict[str, Any]]:
        """`state`: granted, refused or revoked (you must own `name`)."""
        return Call(
            "PUT",
            routes.fill(routes.ACCESS_DECISION, name=name, grantee=grantee),
            dict[str, Any],
            json={"state": state, "note": note},
        )


def raise_for_problem(response: httpx.Response) -> None:
    """An error answer as `ApiError` with the problem+json body (or whatever a proxy sent instead)."""
    if response.status_code < 400:
        return
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text}
    raise ApiError(response.status_code, problem if isinstance(problem, dict) else {"detail": str(problem)})


def _decode(call: Call[T], response: httpx.Response) -> T:
    raise_for_problem(response)
    if call.answer is bytes:
        return response.content  # type: ignore[return-value]
    if call.answer is None:
        return None  # type: ignore[return-value]
    answer = call.accepted if response.status_code == 202 and call.accepted is not None else call.answer
    return msgspec.json.decode(response.content, type=answer)  # type: ignore[no-any-return]


def request_options(call: Call[Any]) -> dict[str, Any]:
    return {
        "params": call.params or None,
        "json": call.json,
        "data": call.data,
        "files": call.files,
        "content": call.content,
        "headers": call.headers or None,
    }


class Client:
    """Synchronous typed client."""

    def __init__(self, settings: ClientSettings | None = None) -> None:
        self.settings = settings or ClientSettings.from_env()
        s = self.settings
        self.http = httpx.Client(
            base_url=s.url,
            headers={"Authorization": f"Bearer {s.api_key}"},
            timeout=s.timeout_s,
            transport=RetryingTransport(s.retry_policy),
        )

    def send(self, call: Call[T]) -> T:
        return _decode(call, self.http.request(call.method, call.path, **request_options(call)))

    def submit(self, image: bytes, **kwargs: Any) -> SegmentationView:
        """Start a segmentation (`Calls.submit` names the options); `wait_s` > 0 answers once it finished."""
        return self.send(Calls.submit(image, **kwargs))

    def status(self, job_id: str) -> SegmentationView:
        return self.send(Calls.status(job_id))

    def artifact(self, job_id: str, name: str) -> bytes:
        return self.send(Calls.artifact(job_id, name))

    def download(self, job: SegmentationView, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {name: folder / FILENAMES.get(name, name) for name in job.artifacts}
        for name, path in paths.items():
            path.write_bytes(self.artifact(job.id, name))
        return paths

    def job(self, job_id: str) -> JobView:
        return self.send(Calls.job(job_id))

    def wait_job(self, job_id: str, timeout_s: float = 300.0, every_s: float = 0.2) -> JobView:
        deadline = time.monotonic() + timeout_s
        while not (job := self.job(job_id)).finished and time.monotonic() < deadline:
            time.sleep(every_s)
        return job

    def models(self) -> list[ModelVersion]:
        return self.send(Calls.models())

    def model(self, name: str, version: int, owner: str | None = None) -> ModelVersion:
        return self.send(Calls.model(name, version, owner))

    def register_model(self, weights: bytes, **kwargs: Any) -> ModelVersion | JobView:
        """The new version (201), or the registration job (202) if checking it took longer than the gateway waits."""
        return self.send(Calls.register_model(weights, **kwargs))

    def merge_models(self, models: list[VersionRef], *, name: str, **options: Any) -> JobView:
        return self.send(Calls.merge_models(MergeBody(models=tuple(models), name=name, **options)))

    def quantize(self, model: VersionRef, *, dataset: str, **options: Any) -> JobView:
        return self.send(Calls.quantize(QuantizeBody(model=model, dataset=dataset, **options)))

    def train(self, body: TrainBody) -> JobView:
        return self.send(Calls.train(body))

    def run(self, run: str) -> TrainingRun:
        return self.send(Calls.run(run))

    def upload(self, data: bytes, content_type: str = "image/png") -> UploadView:
        return self.send(Calls.upload(data, content_type))

    def dataset(self, dataset: str) -> DatasetView:
        return self.send(Calls.dataset(dataset))

    def expand_dataset(self, dataset: str, **options: Any) -> JobView:
        return self.send(Calls.expand_dataset(dataset, ExpandRequest(**options)))

    def edit_layer(self, name: str, version: int, edit: LayerEditBody) -> JobView:
        return self.send(Calls.edit_layer(name, version, edit))

    def release_model(self, name: str, version: int) -> ModelVersion:
        return self.send(Calls.release_model(name, version))

    def aliases(self, name: str, owner: str | None = None) -> list[AliasView]:
        return self.send(Calls.aliases(name, owner))

    def promote(self, name: str, alias: str, version: int, **rule: Any) -> AliasView:
        """`rule`: `require_metric`, `require_shadow_agreement`, `min_shadow_jobs` (PromoteBody)."""
        return self.send(Calls.promote(name, alias, PromoteBody(version=version, **rule)))

    def rollback(self, name: str, alias: str) -> AliasView:
        return self.send(Calls.rollback(name, alias))

    def rollout(self, name: str, alias: str, **split: Any) -> AliasView:
        """`split`: `canary`, `canary_percent`, `shadow` (RolloutBody)."""
        return self.send(Calls.rollout(name, alias, RolloutBody(**split)))

    def guard(self, name: str, alias: str, **rules: Any) -> AliasView:
        """`rules`: `on_drift`, `max_error_rate`, `min_shadow_agreement`, `min_jobs`, `cooldown_s` (RollbackGuard)."""
        return self.send(Calls.guard(name, alias, RollbackGuard(**rules)))

    def version_quality(self, name: str, version: int, owner: str | None = None, **query: int) -> VersionQuality:
        return self.send(Calls.version_quality(name, version, owner, **query))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """Asynchronous typed client (asyncio); the same operations as `Client`."""

    def __init__(self, settings: ClientSettings | None = None) -> None:
        self.settings = settings or ClientSettings.from_env()
        s = self.settings
        self.http = httpx.AsyncClient(
            base_url=s.url,
            headers={"Authorization": f"Bearer {s.api_key}"},
            timeout=s.timeout_s,
            transport=AsyncRetryingTransport(s.retry_policy),
        )

    async def send(self, call: Call[T]) -> T:
        return _decode(call, await self.http.request(call.method, call.path, **request_options(call)))

    async def submit(self, image: bytes, **kwargs: Any) -> SegmentationView:
        return await self.send(Calls.submit(image, **kwargs))

    async def status(self, job_id: str) -> SegmentationView:
        return await self.send(Calls.status(job_id))

    async def artifact(self, job_id: str, name: str) -> bytes:
        return await self.send(Calls.artifact(job_id, name))

    async def job(self, job_id: str) -> JobView:
        return await self.send(Calls.job(job_id))

    async def wait_job(self, job_id: str, timeout_s: float = 300.0, every_s: float = 0.2) -> JobView:
        deadline = time.monotonic() + timeout_s
        while not (job := await self.job(job_id)).finished and time.monotonic() < deadline:  # noqa: ASYNC110 (polls the API)
            await asyncio.sleep(every_s)
        return job

    async def models(self) -> list[ModelVersion]:
        return await self.send(Calls.models())

    async def model(self, name: str, version: int, owner: str | None = None) -> ModelVersion:
        return await self.send(Calls.model(name, version, owner))

    async def register_model(self, weights: bytes, **kwargs: Any) -> ModelVersion | JobView:
        return await self.send(Calls.register_model(weights, **kwargs))

    async def merge_models(self, models: list[VersionRef], *, name: str, **options: Any) -> JobView:
        return await self.send(Calls.merge_models(MergeBody(models=tuple(models), name=name, **options)))

    async def quantize(self, model: VersionRef, *, dataset: str, **options: Any) -> JobView:
        return await self.send(Calls.quantize(QuantizeBody(model=model, dataset=dataset, **options)))

    async def train(self, body: TrainBody) -> JobView:
        return await self.send(Calls.train(body))

    async def run(self, run: str) -> TrainingRun:
        return await self.send(Calls.run(run))

    async def upload(self, data: bytes, content_type: str = "image/png") -> UploadView:
        return await self.send(Calls.upload(data, content_type))

    async def dataset(self, dataset: str) -> DatasetView:
        return await self.send(Calls.dataset(dataset))

    async def expand_dataset(self, dataset: str, **options: Any) -> JobView:
        return await self.send(Calls.expand_dataset(dataset, ExpandRequest(**options)))

    async def edit_layer(self, name: str, version: int, edit: LayerEditBody) -> JobView:
        return await self.send(Calls.edit_layer(name, version, edit))

    async def release_model(self, name: str, version: int) -> ModelVersion:
        return await self.send(Calls.release_model(name, version))

    async def aliases(self, name: str, owner: str | None = None) -> list[AliasView]:
        return await self.send(Calls.aliases(name, owner))

    async def promote(self, name: str, alias: str, version: int, **rule: Any) -> AliasView:
        return await self.send(Calls.promote(name, alias, PromoteBody(version=version, **rule)))

    async def rollback(self, name: str, alias: str) -> AliasView:
        return await self.send(Calls.rollback(name, alias))

    async def rollout(self, name: str, alias: str, **split: Any) -> AliasView:
        return await self.send(Calls.rollout(name, alias, RolloutBody(**split)))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
