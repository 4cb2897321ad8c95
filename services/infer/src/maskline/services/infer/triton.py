"""Talk to Triton: make sure a model version is loaded, then run inference with binary tensors."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import tritonclient.http.aio as triton_http
from numpy.typing import NDArray
from opentelemetry.trace import SpanKind
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from tritonclient.http import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from maskline.contracts.model_v1 import ModelVersion
from maskline.services.infer.budget import PinCheck, Resident, Usage, evictions
from maskline.services.infer.repository import (
    decoder_name,
    s3_repository,
    sam_files,
    triton_name,
    version_files,
    write_version,
)
from maskline.services.infer.settings import InferSettings
from maskline.shared import keys, tracing
from maskline.shared.errors import DependencyUnavailable, PermanentError, RetryableError
from maskline.shared.storage import ObjectStore
from maskline.shared.storage.minio_store import MinioStore

log = structlog.get_logger("infer.triton")


#: tritonclient's aio client runs on aiohttp, which asks for gzip by default, and Triton obliges. For
#: a hop inside one host or cluster that is pure cost: 4 classes of fp16 scores at 256 x 256 took
#: Triton about 18 ms of CPU to compress and infer 2.5 ms to inflate; at the starter's 128 x 128,
#: 4-5 ms of Triton's CPU per job (docs/benchmarks.md). Ask for the bytes as they are. A fresh dict
#: per call: the client adds its own headers to the one it is given.
def uncompressed_headers(traceparent: str | None = None) -> dict[str, str]:
    headers = {"Accept-Encoding": "identity"}
    if traceparent:
        headers["traceparent"] = traceparent  # Triton continues the job's trace when its tracing is on
    return headers


class TritonUnavailable(RetryableError):
    """Triton answered with an error, or the model is not loaded (any more): retried, counted."""

    code = "triton_unavailable"


class TritonUnreachable(DependencyUnavailable):
    """Triton does not answer at all (down, restarting): the consumer pauses until it is back."""

    code = "triton_unreachable"
    dependency = "triton"


class ModelLoadFailed(PermanentError):
    """Triton refused to load the model version (bad TorchScript, wrong shapes...)."""

    code = "model_load_failed"


class Batcher:
    """One Triton request for the images of several jobs, without making any job wait for company:
    a job's batch goes out at once while fewer than `in_flight` requests of its model version are
    under way; the batches that arrive meanwhile queue, and the next request takes them all (up to
    `limit` images). At concurrency 1 nothing changes; under load the per-request costs (HTTP, the
    Python backend's hand-over) are paid once per batch instead of once per job."""

    def __init__(self, send: Callable[[NDArray[np.float32]], Awaitable[NDArray[np.float16]]], limit: int, in_flight: int) -> None:
        self.send, self.limit, self.in_flight = send, limit, in_flight
        self._queue: list[tuple[NDArray[np.float32], asyncio.Future[NDArray[np.float16]]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float16]:
        future: asyncio.Future[NDArray[np.float16]] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, future))
        if self._running < self.in_flight:
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                taken, images = [], 0
                while self._queue and images + self._queue[0][0].shape[0] <= self.limit:
                    item = self._queue.pop(0)
                    taken.append(item)
                    images += item[0].shape[0]
                if not taken:  # one batch at the limit alone
                    taken.append(self._queue.pop(0))
                await self._send(taken)
        finally:
            self._running -= 1

    async def _send(self, taken: list[tuple[NDArray[np.float32], asyncio.Future[NDArray[np.float16]]]]) -> None:
        joined = taken[0][0] if len(taken) == 1 else np.concatenate([batch for batch, _ in taken])
        try:
            probs = await self.send(joined)
        except BaseException as exc:  # every job of the request gets the failure (a retry, a pause)
            for _, future in taken:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for batch, future in taken:
            end = start + batch.shape[0]
            if not future.done():
                future.set_result(probs[start:end])
            start = end


class Triton:
    def __init__(self, settings: InferSettings, store: ObjectStore) -> None:
        self.settings = settings
        self.store = store
        self.client = triton_http.InferenceServerClient(settings.triton_url, conn_timeout=settings.triton_timeout_s)
        self.repository = Path(settings.triton_repository)
        self.s3_prefix = ""
        if settings.triton_repository.startswith("s3://"):
            if not isinstance(store, MinioStore):
                raise ValueError("an S3 Triton repository needs the S3 object store (MASKLINE_STORE=minio)")
            self.s3_prefix = s3_repository(settings.triton_repository, store.bucket)
        self._locks: dict[str, asyncio.Lock] = {}
        self._ready: set[tuple[str, int]] = set()
        self.budget = settings.triton_memory_budget_mb * 1024 * 1024
        """Bytes of loaded versions Triton may hold (0: no budget, nothing is unloaded)."""
        self.usage = Usage()
        self.is_pinned: PinCheck | None = None
        #: Loads and unloads one at a time while a budget is kept: reloading a model (to drop one of
        #: its versions) must not cross another load of it.
        self._budget_lock = asyncio.Lock()
        self.resident: list[Resident] = []
        """What Triton held after this instance's last load (its status shows it)."""
        self._batchers: dict[tuple[str, int, tuple[int, ...]], Batcher] = {}
        #: Requests of one model version in flight at once: one per Triton instance keeps each busy.
        self._in_flight = max(1, settings.triton_instances)

    async def ready(self) -> bool:
        try:
            return bool(await self.client.is_server_ready())
        except Exception:
            return False

    @contextlib.asynccontextmanager
    async def using(self, model: ModelVersion) -> AsyncIterator[None]:
        """Mark a version in use by a request of this instance: it is not unloaded meanwhile."""
        key = (triton_name(model), model.version)
        self.usage.in_use[key] += 1
        try:
            yield
        finally:
            self.usage.in_use[key] -= 1
            if self.usage.in_use[key] <= 0:
                del self.usage.in_use[key]
            self.usage.touch(key)

    async def ensure_loaded(self, model: ModelVersion) -> float:
        """Make sure the version is loaded; the seconds it took to load it (0.0: it was loaded)."""
        name = triton_name(model)
        key = (name, model.version)
        self.usage.touch(key)
        if key in self._ready:
            return 0.0
        if not self.budget:
            async with self._locks.setdefault(name, asyncio.Lock()):
                return await self._load(model)
        async with self._budget_lock:
            return await self._load(model, within_budget=True)

    async def _load(self, model: ModelVersion, within_budget: bool = False) -> float:
        name = triton_name(model)
        key = (name, model.version)
        names = [name, decoder_name(model)] if model.decoder is not None else [name]
        started = time.perf_counter()
        try:
            if all([await self.client.is_model_ready(n, str(model.version)) for n in names]):
                self._ready.add(key)
                return 0.0
            if within_budget:
                await self._make_room(model)
            await self._write(model)
            for n in names:
                await self.client.load_model(n)
        except InferenceServerException as exc:
            raise ModelLoadFailed(f"Triton could not load {model.name}/{model.version}: {exc.message()}") from exc
        except (OSError, TimeoutError) as exc:
            raise TritonUnreachable(f"Triton unreachable: {exc!r}") from exc
        for n in names:
            if not await self.client.is_model_ready(n, str(model.version)):
                raise ModelLoadFailed(f"Triton loaded {n} but version {model.version} is not ready")
        self._ready.add(key)
        seconds = time.perf_counter() - started
        self.usage.loads += 1
        self.usage.load_seconds += seconds
        try:
            self.resident = await self._resident()
        except (InferenceServerException, OSError, TimeoutError) as exc:  # the status only: the load stands
            log.warning("triton.index_failed", error=str(exc))
        return seconds

    def _size_needed(self, model: ModelVersion) -> int:
        return model.weights.size + (model.decoder.weights.size if model.decoder is not None else 0)

    async def _make_room(self, model: ModelVersion) -> None:
        """Unload the versions unused the longest until this one fits (`budget.evictions`)."""
        resident = await self._resident()
        chosen = evictions(resident, self._size_needed(model), self.budget)
        gone: list[Resident] = []
        for r in chosen:
            key = (r.name, r.version)
            self._ready.discard(key)  # a request for it from here on takes the slow path: it waits for this lock
            if self.usage.in_use.get(key):  # one started on it since the snapshot: it stays
                self._ready.add(key)
                continue
            # other versions of the model loaded right now: reload it without this one (else unload it)
            staying = any(o.name == r.name and o.version != r.version and o not in gone for o in resident)
            await self._unload(r, staying)
            gone.append(r)
        left = sum(r.size for r in resident if r not in gone)
        if left + self._size_needed(model) > self.budget:
            self.usage.over_budget_loads += 1
            log.warning("triton.over_budget", model=triton_name(model), version=model.version, pinned_or_busy_bytes=left)

    async def _resident(self) -> list[Resident]:
        """The versions Triton holds now (its repository index), with their size, last use and pins."""
        index = await self.client.get_model_repository_index()
        ready = {(e["name"], int(e["version"])) for e in index if e.get("state") == "READY" and e.get("version")}
        found = []
        for name, version in sorted(ready):
            if name.count(".") == 2 and name.endswith(".decoder"):
                continue  # a SAM-format version's decoder (`owner.model.decoder`): counted with its encoder
            size = await self._files_size(name, version)
            if (f"{name}.decoder", version) in ready:
                size += await self._files_size(f"{name}.decoder", version)
            # pins matter only under a budget (they cost a registry read)
            pinned = bool(self.budget) and self.is_pinned is not None and await self.is_pinned(name, version)
            found.append(
                Resident(
                    name=name,
                    version=version,
                    size=size,
                    last_used=self.usage.last_used.get((name, version)) or await self._triton_last_use(name, version),
                    pinned=pinned,
                    in_use=self.usage.in_use.get((name, version), 0) > 0,
                )
            )
        return found

    async def _triton_last_use(self, name: str, version: int) -> float:
        """When Triton last ran the version (seconds since the epoch; 0: not since it was loaded):
        the last use of a version another instance loaded or served."""
        try:
            stats = await self.client.get_inference_statistics(name, str(version))
            return float(stats["model_stats"][0].get("last_inference", 0)) / 1000
        except (InferenceServerException, OSError, TimeoutError, KeyError, IndexError):
            return 0.0

    async def _files_size(self, name: str, version: int) -> int:
        if not self.s3_prefix:
            folder = self.repository / name / str(version)
            return await asyncio.to_thread(lambda: sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()))
        infos = await self.store.list_info(keys.triton_repository_file(self.s3_prefix, f"{name}/{version}/"))
        return sum(i.size for i in infos)

    async def _unload(self, r: Resident, staying: bool) -> None:
        """Take one version out of Triton: its files out of the repository, then the model reloaded
        with the versions that stay (Triton keeps serving those), or unloaded when none does."""
        for name in (r.name, f"{r.name}.decoder"):
            if not self.s3_prefix:
                await asyncio.to_thread(shutil.rmtree, self.repository / name / str(r.version), True)
            else:
                for info in await self.store.list_info(keys.triton_repository_file(self.s3_prefix, f"{name}/{r.version}/")):
                    await self.store.delete(info.key)
        decoder = f"{r.name}.decoder"
        has_decoder = await self._known(decoder)
        try:
            for name in [r.name, decoder] if has_decoder else [r.name]:
                await (self.client.load_model(name) if staying else self.client.unload_model(name))
        except InferenceServerException as exc:
            raise TritonUnavailable(f"Triton could not unload {r.name}/{r.version}: {exc.message()}") from exc
        self._ready.discard((r.name, r.version))
        self.usage.unloads += 1
        log.info("triton.unloaded", model=r.name, version=r.version, bytes=r.size, last_used=r.last_used, reloaded=staying)

    async def _known(self, name: str) -> bool:
        index = await self.client.get_model_repository_index()
        return any(e["name"] == name for e in index)

    def report(self) -> dict[str, Any]:
        """The budget and what Triton held after this instance's last load (the service's status)."""
        return {
            "budget_bytes": self.budget,
            "loaded_bytes": sum(r.size for r in self.resident),
            "loaded": [
                {"model": r.name, "version": r.version, "bytes": r.size, "pinned": r.pinned, "last_used": r.last_used}
                for r in self.resident
            ],
            "loads": self.usage.loads,
            "unloads": self.usage.unloads,
            "over_budget_loads": self.usage.over_budget_loads,
            "load_seconds": round(self.usage.load_seconds, 3),
        }

    async def _write(self, model: ModelVersion) -> None:
        s = self.settings
        weights = await self.store.get(model.weights.key)
        if model.decoder is not None:
            decoder = await self.store.get(model.decoder.weights.key)
            files = sam_files(model, weights, decoder, kind=s.triton_instance_kind, instances=s.triton_instances)
        else:
            files = version_files(
                model,
                weights,
                kind=s.triton_instance_kind,
                instances=s.triton_instances,
                max_batch=s.triton_max_batch,
                queue_delay_us=s.triton_queue_delay_us,
            )
        if not self.s3_prefix:
            await asyncio.to_thread(write_version, self.repository, files)
            return
        for relative, data in files:
            await self.store.put(keys.triton_repository_file(self.s3_prefix, relative), data)

    async def infer(self, model: ModelVersion, batch: NDArray[np.float32]) -> NDArray[np.float16]:
        """Class probabilities for a batch; one larger than the model's batch limit (the tiles of a
        large image) goes in limit-sized requests, side by side. Jobs' batches of one model version
        that arrive while its requests are in flight go to Triton together (`Batcher`)."""
        limit = max(1, self.settings.triton_max_batch)
        if batch.shape[0] > limit:
            parts = [self._infer(model, batch[i : i + limit]) for i in range(0, batch.shape[0], limit)]
            return np.concatenate(await asyncio.gather(*parts))
        key = (triton_name(model), model.version, batch.shape[1:])
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = self._batchers[key] = Batcher(lambda joined: self._infer(model, joined), limit, self._in_flight)
        return await batcher.infer(batch)

    async def _infer(self, model: ModelVersion, batch: NDArray[np.float32]) -> NDArray[np.float16]:
        answer = await self._request(model, triton_name(model), {"image": batch}, ["probs"], batch=int(batch.shape[0]))
        return np.asarray(answer["probs"], dtype=np.float16)

    async def run_named(
        self, model: ModelVersion, name: str, feeds: dict[str, NDArray[np.float32]], outputs: list[str]
    ) -> dict[str, NDArray[np.float32]]:
        """One request to a model of named tensors (a SAM-format part): float32 in, float32 out."""
        answer = await self._request(model, name, feeds, outputs)
        return {o: np.asarray(a, dtype=np.float32) for o, a in answer.items()}

    async def _request(
        self, model: ModelVersion, name: str, feeds: dict[str, NDArray[np.float32]], outputs: list[str], batch: int = 1
    ) -> dict[str, NDArray[Any]]:
        """Binary float32 tensors in, the named outputs back; Triton's failures as the retry policy
        wants them (answered with an error: retried; not answering: the consumer pauses)."""
        inputs = []
        for key, array in feeds.items():
            tensor = InferInput(key, list(array.shape), "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(array, dtype=np.float32), binary_data=True)
            inputs.append(tensor)
        try:
            with tracing.tracer.start_as_current_span("triton infer", kind=SpanKind.CLIENT) as span:
                span.set_attributes({"maskline.model": name, "maskline.batch": batch})
                result = await self.client.infer(
                    name,
                    inputs,
                    model_version=str(model.version),
                    outputs=[InferRequestedOutput(o, binary_data=True) for o in outputs],
                    timeout=int(self.settings.triton_timeout_s * 1_000_000),
                    headers=uncompressed_headers(tracing.current_traceparent()),
                )
        except InferenceServerException as exc:
            self._ready.discard((triton_name(model), model.version))
            raise TritonUnavailable(f"Triton inference failed: {exc.message()}") from exc
        except (TimeoutError, OSError) as exc:
            self._ready.discard((triton_name(model), model.version))  # a restarted Triton loads nothing
            raise TritonUnreachable(f"Triton unreachable: {exc!r}") from exc
        answers = {o: result.as_numpy(o) for o in outputs}
        missing = [o for o, a in answers.items() if a is None]
        if missing:
            raise TritonUnavailable(f"Triton returned no {missing} from {name}")
        return {o: a for o, a in answers.items() if a is not None}

    async def close(self) -> None:
        await self.client.close()


class TritonBudgetMetrics(Collector):
    """`maskline_triton_*`: what this instance's Triton holds against the budget, and the loads and
    unloads this instance made (unlabelled beyond the service: no model names)."""

    def __init__(self, triton: Triton) -> None:
        self.triton = triton

    def collect(self) -> Iterator[Metric]:
        t, usage = self.triton, self.triton.usage
        gauges: tuple[tuple[str, str, float], ...] = (
            ("maskline_triton_budget_bytes", "The memory budget for loaded versions (0: none)", t.budget),
            (
                "maskline_triton_loaded_bytes",
                "Bytes of the versions Triton held after the last load",
                sum(r.size for r in t.resident),
            ),
            ("maskline_triton_loaded_versions", "Versions Triton held after the last load", len(t.resident)),
        )
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        counters: tuple[tuple[str, str, float], ...] = (
            ("maskline_triton_loads", "Versions this instance loaded into Triton", usage.loads),
            ("maskline_triton_unloads", "Versions this instance unloaded to keep within the budget", usage.unloads),
            (
                "maskline_triton_over_budget_loads",
                "Loads that went over budget (pinned or busy versions fill it)",
                usage.over_budget_loads,
            ),
            ("maskline_triton_load_seconds", "Time spent loading versions", usage.load_seconds),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
