from __future__ import annotations

from typing import Literal

from maskline.shared.config import RuntimeSettings


class InferSettings(RuntimeSettings, kw_only=True, frozen=True):
    triton_url: str = "127.0.0.1:8000"
    """host:port of Triton's HTTP endpoint."""
    triton_repository: str = ".maskline/triton/models"
    """Triton's model repository, written by this service when a model version is first needed."""
    triton_timeout_s: float = 30.0
    triton_instance_kind: Literal["KIND_CPU", "KIND_GPU"] = "KIND_CPU"
    triton_instances: int = 1
    triton_max_batch: int = 8
    triton_queue_delay_us: int = 0
    """Dynamic batching: how long Triton holds a request for others to join its batch. 0: requests
    that queue while an instance is busy still go as one batch, and none waits for company — on
    2 cores 2000 µs cost Triton-direct 22% of its throughput at concurrency 1 and 46% at 4
    (starter model, docs/benchmarks.md)."""
    triton_memory_budget_mb: int = 0
    """What the versions loaded in this service's Triton may take (their repository files, MiB; 0:
    no budget). Loading one more unloads the versions unused the longest first (docs/monitoring.md)."""
    triton_pinned_aliases: str = "maskline/*/stable"
    """Comma-separated `owner/model/alias` patterns (`*` matches anything) of the aliases whose
    versions the memory budget never unloads. The default pins the platform's bundled models'
    `stable` only: pinning every tenant's `stable` (each model has one) would leave no budget."""
    warm_models: str = ""
    """Comma-separated model names to load into Triton at start, so the first request is not slow."""
    embedding_cache_mb: int = 256
    """Image embeddings kept for further prompts on the same image (per instance; MiB)."""
    embedding_ttl_s: float = 900.0
    """How long an image's embedding is kept after it was made."""
