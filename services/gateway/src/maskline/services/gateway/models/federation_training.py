"""A site's consent to train a federation's rounds through maskline, over HTTP: given, read and
withdrawn by the site alone. With it, every round that opens starts a training job of the site's own
tenant on the site's own dataset, and the trained weights go to the round as the site's update (the
train service, `federated.py`); enrolling while a round is open starts that round's training now."""

from __future__ import annotations

import uuid

import msgspec
from litestar import Controller, delete, get, put
from litestar.status_codes import HTTP_200_OK

from maskline.contracts import model_v1, train_v1
from maskline.contracts.common_v1 import JobFailed
from maskline.contracts.envelope import now
from maskline.contracts.http_v1 import SiteTrainingBody, SiteTrainingView
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.errors import NotFound, Unprocessable
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.data.datasets import NAME_REFUSALS
from maskline.services.gateway.data.datasets import prefix as dataset_prefix
from maskline.services.gateway.models.federations import SHARES_MODELS, Run, visible_run
from maskline.services.gateway.models.sharing import OwnerParam
from maskline.services.gateway.tracking.job_routes import CommandJobs
from maskline.shared import keys
from maskline.shared.bus import Bus
from maskline.shared.jobs.state import JobStore
from maskline.shared.models.rounds import HeldRound, held_round, round_deadline, site_round_training
from maskline.shared.storage import ObjectNotFound

_NOT_ENROLLED = NotFound.coded("federation_not_found", "not_enrolled")
_decoder = msgspec.json.Decoder(train_v1.SiteTraining)


async def _site_run(bus: Bus, tenant: str, federation: str, owner: str | None) -> Run:
    """The run, when the caller is one of its sites (its owner alone may not train for a site)."""
    run = await visible_run(bus, tenant, federation, owner)
    if tenant not in run.first.sites:
        raise NotFound(f"{tenant} is not a site of federation {federation}", code="federation_not_found")
    return run


def round_to_train(run: Run, held: HeldRound | None, site: str) -> model_v1.RoundOpened | None:
    """The round a site that enrols now trains at once: the latest opened by the audit trail or by the
    weights service's record, whichever is further (either may lag the other, and a round that opened
    before the consent was written is not started by the train service); none when that round closed,
    the site reported to it, or the run ended. The train job checks the round again before it trains."""
    if any(isinstance(e.data, JobFailed) or (isinstance(e.data, model_v1.RoundClosed) and e.data.final) for e in run.events):
        return None
    latest = run.current
    if held is not None and held.current.round >= latest.round:
        if not held.open_to(site, held.current.round):
            return None
        latest = held.current
    closed = {e.data.round for e in run.events if isinstance(e.data, model_v1.RoundClosed)}
    reported = {e.data.round for e in run.events if isinstance(e.data, model_v1.SiteUpdate) and e.data.site == site}
    return None if latest.round in closed | reported else latest


async def _consent(store: Store, site: str, run: Run) -> train_v1.SiteTraining:
    """The site's stored consent for the run (404 `not_enrolled` without one)."""
    try:
        return _decoder.decode(await store.get(keys.site_training(site, run.owner, run.federation)))
    except ObjectNotFound as exc:
        raise NotFound(f"you do not train the rounds of {run.federation} here", code="not_enrolled") from exc


def _view(run: Run, training: train_v1.SiteTraining, job: str | None) -> SiteTrainingView:
    links = {"federation": f"/v1/federations/{run.federation}?owner={run.owner}", **({"job": f"/v1/jobs/{job}"} if job else {})}
    return SiteTrainingView(federation=run.federation, owner=run.owner, training=training, job=job, links=links)


class FederationTrainingController(Controller):
    path = "/v1/federations/{federation:str}/training"
    tags = ["federation"]

    @put(
        status_code=HTTP_200_OK,
        summary="A site: train every round of this federation here, on one of your datasets (owners; starts the open round's)",
        opt={
            **SHARES_MODELS,
            ANSWERS: Answers(refusals=NotFound.coded("federation_not_found") + NAME_REFUSALS + Unprocessable.coded()),
        },
    )
    async def enrol(
        self,
        command_jobs: CommandJobs,
        job_store: JobStore,
        store: Store,
        bus: Bus,
        tenant: str,
        federation: str,
        data: SiteTrainingBody,
        owner: OwnerParam = None,
    ) -> SiteTrainingView:
        run = await _site_run(bus, tenant, federation, owner)
        raw = msgspec.to_builtins(data) | {"dataset": dataset_prefix(tenant, data.dataset), "enrolled": now().isoformat()}
        try:
            training = msgspec.convert(raw, train_v1.SiteTraining)
        except msgspec.ValidationError as exc:
            raise Unprocessable(f"invalid site training: {exc}") from exc
        command_jobs.intake.require_bus()
        await store.put(keys.site_training(tenant, run.owner, federation), msgspec.json.encode(training), "application/json")
        opened = round_to_train(run, await held_round(bus.js, run.owner, federation), tenant)
        if opened is None:
            return _view(run, training, None)  # the next round that opens starts it (the train service)
        job = keys.site_training_job(run.owner, federation, opened.round)
        earlier = await job_store.get(tenant, job)
        if earlier is not None and earlier.status not in ("failed", "cancelled"):
            return _view(run, training, job)  # this round's training is under way (or done)
        if earlier is not None:  # enrolling again after it failed: a new try of the round
            job = f"{job}-{uuid.uuid4().hex[:8]}"
        request = site_round_training(training, opened, run.owner, federation)
        deadline = round_deadline(opened, run.events[-1].time)
        await command_jobs.submit(tenant, train_v1.TRAIN_REQUESTED, request, job_id=job, deadline=deadline)
        return _view(run, training, job)

    @get(
        summary="A site: your consent to train this federation's rounds here",
        opt={ANSWERS: Answers(refusals=_NOT_ENROLLED)},
    )
    async def enrolment(self, store: Store, bus: Bus, tenant: str, federation: str, owner: OwnerParam = None) -> SiteTrainingView:
        run = await _site_run(bus, tenant, federation, owner)
        training = await _consent(store, tenant, run)
        held = await held_round(bus.js, run.owner, federation)
        job = keys.site_training_job(run.owner, federation, held.current.round) if held is not None else None
        return _view(run, training, job)

    @delete(
        status_code=HTTP_200_OK,
        summary="A site: stop training this federation's rounds here (a round's training under way sends nothing)",
        opt={ANSWERS: Answers(refusals=_NOT_ENROLLED)},
    )
    async def withdraw(self, store: Store, bus: Bus, tenant: str, federation: str, owner: OwnerParam = None) -> SiteTrainingView:
        run = await _site_run(bus, tenant, federation, owner)
        training = await _consent(store, tenant, run)
        await store.delete(keys.site_training(tenant, run.owner, federation))
        return _view(run, training, None)
