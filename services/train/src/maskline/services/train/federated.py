"""Sites that train through maskline: a federated round's training runs as a train job of the site's
own tenant, on the site's own dataset, and its result goes to the round as the site's update.

Two ways in. A site that consented to train every round (`SiteTraining`, written through the
gateway) has each round's training started here when the round opens; a site (or its system on the
bus) may also ask for one round's training itself. Either way the job is the site's: the data never
leaves the site's tenant, only the trained weights go to the round, exactly as an upload by the site
would. Before training and again before submitting, the weights service's record of the round is
the authority: the job's tenant must be one of its sites and the round still open to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

import msgspec
import structlog
from torch import nn

from maskline.contracts import model_v1, train_v1
from maskline.contracts.envelope import Envelope, job_event
from maskline.shared import keys
from maskline.shared.bus import Bus
from maskline.shared.errors import PermanentError, RetryableError
from maskline.shared.models.access import copyable_by
from maskline.shared.models.registry import ModelNotFound, ModelRegistry
from maskline.shared.models.rounds import HeldRound, held_round, round_deadline, site_round_training
from maskline.shared.storage import ObjectNotFound, ObjectStore

SOURCE = "train"
#: How long a training waits for the weights service to record the round it was started for.
ROUND_WAIT_S = 30.0
log = structlog.get_logger("federated")
_consent = msgspec.json.Decoder(train_v1.SiteTraining)


class SiteRounds:
    def __init__(self, bus: Bus, store: ObjectStore, registry: ModelRegistry) -> None:
        self.bus, self.store, self.registry = bus, store, registry

    async def on_opened(self, env: Envelope[model_v1.RoundOpened]) -> list[Envelope[Any]]:
        """A round opened: start the training of every site that consented to train its rounds here."""
        owner, federation, opened = env.tenant, env.job_id, env.data
        commands: list[Envelope[Any]] = []
        for site in opened.sites:
            try:
                seat = _consent.decode(await self.store.get(keys.site_training(site, owner, federation)))
            except ObjectNotFound:
                continue  # this site trains on its own and uploads its update
            except msgspec.DecodeError as exc:  # one unreadable consent must not hold the other sites back
                log.error("federated.unreadable_consent", federation=federation, site=site, error=str(exc))
                continue
            request = site_round_training(seat, opened, owner, federation)
            job_id = keys.site_training_job(owner, federation, opened.round)
            log.info("federated.site_training", federation=federation, round=opened.round, site=site, job_id=job_id)
            deadline = round_deadline(opened, env.time)
            commands.append(
                job_event(
                    train_v1.TRAIN_REQUESTED,
                    SOURCE,
                    request,
                    tenant=site,
                    job_id=job_id,
                    trace_id=env.trace_id,
                    deadline=deadline,
                )
            )
        return commands

    async def consented(self, site: str, seat: train_v1.FederationSeat, job_id: str) -> None:
        """A job the site's consent started goes on only while the consent stands (withdrawn: its
        weights never reach the round). A job the site asked for itself needs none."""
        if not job_id.startswith(keys.SITE_TRAINING_JOB):
            return
        try:
            await self.store.get(keys.site_training(site, seat.owner, seat.federation))
        except ObjectNotFound as exc:
            raise PermanentError(
                f"{site} withdrew its consent to train the rounds of {seat.federation}", code="consent_withdrawn"
            ) from exc

    async def round_model(self, site: str, seat: train_v1.FederationSeat) -> model_v1.ModelVersion:
        """The global model of the round `site` trains for (PermanentError when it is not one of the
        federation's sites or the round is past; retried while the round has not opened yet)."""
        held = await self._held(site, seat)
        self._open(held, site, seat)
        ref = held.current.model
        missing = f"round {seat.round} of {seat.federation} has no model to train"
        try:
            model = await self.registry.get(ref.owner or seat.owner, ref.name, ref.version)
        except ModelNotFound as exc:
            raise PermanentError(missing, code="model_not_found") from exc
        if not copyable_by(seat.owner, model):  # the same rule as a site's download of the round's model
            raise PermanentError(missing, code="model_not_copyable")
        return model

    async def _held(self, site: str, seat: train_v1.FederationSeat) -> HeldRound:
        """The weights service's record, once it shows the seat's round. A round that is opening (the
        next one, or round 1 of a federation not recorded yet) is waited for a while: the weights
        service records a round moments after it opens. Anything else is refused at once, and a
        federation that does not exist is answered as one the tenant is not a site of."""
        loop = asyncio.get_running_loop()
        until = loop.time() + ROUND_WAIT_S
        while True:
            held = await held_round(self.bus.js, seat.owner, seat.federation)
            if held is not None and site not in held.current.sites:
                break
            opening = seat.round == 1 if held is None else held.current.round == seat.round - 1
            if not opening:
                break
            if loop.time() > until:
                if held is None:
                    break
                raise RetryableError(f"round {seat.round} of {seat.federation} has not opened yet")
            await asyncio.sleep(0.5)
        if held is None or site not in held.current.sites:  # never say whose federations exist
            raise PermanentError(f"{site} is not a site of federation {seat.federation}", code="federation_not_found")
        return held

    def _open(self, held: HeldRound, site: str, seat: train_v1.FederationSeat) -> None:
        if not held.open_to(site, seat.round):
            state = ", closed" if held.closed else ", closing" if held.closing_at is not None else ""
            raise PermanentError(
                f"round {seat.round} of {seat.federation} is not open to {site} "
                f"(the federation is at round {held.current.round}{state})",
                code="round_not_open",
            )

    async def store_update(
        self, site: str, seat: train_v1.FederationSeat, weights: bytes, samples: int, metrics: dict[str, float]
    ) -> model_v1.SiteUpdate:
        """The trained weights kept for the round (under their own digest: a later run of the same
        site and round cannot replace bytes the round accepted), as the site's update, not yet sent."""
        held = await self._held(site, seat)
        digest = hashlib.sha256(weights).hexdigest()
        if not held.reported(site, seat.round, digest):
            self._open(held, site, seat)
        ref = await self.store.put(
            keys.site_update(seat.owner, seat.federation, seat.round, site, digest[:16]), weights, "application/octet-stream"
        )
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}  # JSON has no NaN
        return model_v1.SiteUpdate(round=seat.round, site=site, weights=ref, samples=samples, metrics=finite)

    async def submit(self, seat: train_v1.FederationSeat, update: model_v1.SiteUpdate, trace_id: str) -> None:
        """Send the update to the round, as the gateway's upload does. Sending it again (a redelivered
        job) is the same event: the bus drops it, or the weights service sees it is the same update."""
        parts = (seat.round, update.site, update.weights.sha256[:12])
        event = job_event(
            model_v1.UPDATE_SUBMITTED, SOURCE, update, tenant=seat.owner, job_id=seat.federation, trace_id=trace_id, parts=parts
        )
        await self.bus.publish(event)
        log.info("federated.update_submitted", federation=seat.federation, round=seat.round, site=update.site)


def check_fits(module: nn.Module, round_module: nn.Module) -> None:
    """A site's own network must have the round model's parameters, name for name and shape for shape:
    the round merges them tensor by tensor."""
    mine = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in round_module.state_dict().items()}
    if mine != theirs:
        differ = sorted(set(mine) ^ set(theirs)) or sorted(k for k in mine if mine[k] != theirs[k])
        raise PermanentError(
            f"the architecture does not fit the federation's model (parameters differ: {', '.join(differ[:5])})",
            code="architecture_mismatch",
        )
