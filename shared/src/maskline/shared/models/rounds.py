"""Federated rounds as the weights service holds them (the `rounds` bucket), read by the services
that do not run rounds: the gateway lists and checks them, the train service checks that a site's
training is for a round it may still report to. Also the one rule that turns a site's standing
consent (`SiteTraining`) into the training of one round."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from nats.js import JetStreamContext

from maskline.contracts import model_v1, train_v1
from maskline.shared.kv import get_decoded, open_bucket

BUCKET = "rounds"


class HeldRound(msgspec.Struct, kw_only=True):
    """What the other services read of a federation's record (unknown fields skipped)."""

    tenant: str
    trace_id: str = ""
    current: model_v1.RoundOpened
    updates: dict[str, Any] = {}
    closed: bool = False
    closing_at: float | None = None
    stopped: bool = False

    def open_to(self, site: str, round_: int) -> bool:
        """`site` may still report for `round_`: it is the open round, not closing, and the site has
        not reported."""
        return self.current.round == round_ and not self.closed and self.closing_at is None and site not in self.updates

    def reported(self, site: str, round_: int, sha256: str) -> bool:
        """The round holds exactly this update of `site` (its weights' sha256) already."""
        update = self.updates.get(site) if self.current.round == round_ else None
        return isinstance(update, dict) and update.get("weights", {}).get("sha256") == sha256


held_decoder = msgspec.json.Decoder(HeldRound)


def federation_key(owner: str, federation: str) -> str:
    """One key per federation, scoped to its tenant (federation ids are chosen by outside systems)."""
    return f"{owner}.{federation}"


async def held_round(js: JetStreamContext, owner: str, federation: str) -> HeldRound | None:
    """The federation's record, or None when the weights service holds none (yet) under that key."""
    return await get_decoded(await open_bucket(js, BUCKET), federation_key(owner, federation), held_decoder)


def site_round_training(
    seat: train_v1.SiteTraining, opened: model_v1.RoundOpened, owner: str, federation: str
) -> train_v1.TrainRequested:
    """The training of one round that a site's consent asks for: its own dataset, from the round's
    model (or, in round 1 with an architecture, from its own initialisation), a seed per round."""
    hyper = msgspec.structs.replace(seat.hyperparameters, seed=seat.hyperparameters.seed + opened.round - 1)
    own_start = seat.architecture if opened.round == 1 else None
    return train_v1.TrainRequested(
        name=opened.name,
        dataset=seat.dataset,
        architecture=own_start,
        hyperparameters=hyper,
        checkpoint_every=seat.checkpoint_every,
        federation=train_v1.FederationSeat(federation=federation, owner=owner, round=opened.round),
    )


def round_deadline(opened: model_v1.RoundOpened, opened_at: datetime) -> datetime:
    """When the round closes whatever was reported: a site's training of it is worth nothing after."""
    return (opened.opened_at or opened_at) + timedelta(seconds=opened.deadline_s)
