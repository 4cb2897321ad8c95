"""Train: `model.v1.train.requested` → steps, checkpoints and progress → a registered version and
its run record → `model.v1.trained` (and the version's evaluation, when a held-out dataset is named).
A federated round's opening (`model.v1.round.opened`) starts the training of each site that consented
to train its rounds here; such a run's weights go to the round as the site's update (`federated.py`).

A stage of its own (decision 0018): training takes every core (or a GPU) for minutes, so it scales
apart from serving and from the other model jobs, and only its workers need a GPU.
"""

from __future__ import annotations

from collections.abc import Awaitable

import torch

from maskline.contracts import model_v1, train_v1
from maskline.services.train.job import TrainJobs
from maskline.services.train.mlflow_log import MlflowLogging
from maskline.services.train.settings import TrainSettings
from maskline.services.train.sweeps import SweepJobs
from maskline.shared.jobs.fence import Fences, fenced
from maskline.shared.jobs.state import JobStore
from maskline.shared.models.access import Grants, ModelAccess
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.service.consumer import ConsumerSpec
from maskline.shared.service.runtime import Runtime

NAME = "train"


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    settings = runtime.settings
    assert isinstance(settings, TrainSettings)
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    registry = await ModelRegistry.opened(runtime.bus.js)
    access = ModelAccess(registry, await Grants.opened(runtime.bus.js))
    fences = await Fences.opened(runtime.bus.js, runtime.bus)
    jobs = TrainJobs(runtime, registry, access, fences, settings)
    # One trained event (and one version) per job; the gateway's cancel races for the same fence.
    handler = fenced(fences, "train", jobs.run)
    # One run at a time per worker: a run uses every core (or the GPU); more workers, more runs.
    runtime.consume(ConsumerSpec.for_subject(NAME, train_v1.TRAIN_REQUESTED, handler, failure=model_v1.FAILED, concurrency=1))
    # A sweep's driver only asks, reads and tells: several run beside a training without slowing it.
    sweeps = SweepJobs(runtime, fences, await JobStore.opened(runtime.bus.js))
    sweep_handler = fenced(fences, "sweep", sweeps.run)  # one swept event per sweep
    sweep_spec = ConsumerSpec.for_subject(NAME, train_v1.SWEEP_REQUESTED, sweep_handler, failure=model_v1.FAILED, concurrency=4)
    runtime.consume(sweep_spec)
    # Finished runs to MLflow, when configured: its own consumer, so an MLflow outage pauses only it.
    mlflow = MlflowLogging(settings.mlflow_tracking_uri)
    runtime.consume(ConsumerSpec.for_subject(NAME, train_v1.TRAINED, mlflow.on_trained, concurrency=1))
    # Rounds opening: start the training of each site that consented (never fails the federation).
    runtime.consume(ConsumerSpec.for_subject(NAME, model_v1.ROUND_OPENED, jobs.sites.on_opened, concurrency=1))
    return []
