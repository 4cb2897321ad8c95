"""Federated runs for people: start, watch and stop one over HTTP; sites (tenants with their own API
keys) download the round's global model and upload their update here instead of holding bus and
store credentials. The weights service runs the rounds exactly as for sites on the bus; this module
only publishes the commands and reads the run back from its audit trail."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from maskline.contracts import model_v1
from maskline.contracts.common_v1 import JobFailed
from maskline.contracts.envelope import Envelope, job_event, new_trace_id
from maskline.contracts.http_v1 import FederationBody, FederationSummary, FederationView, JobError, RoundView, SiteReport
from maskline.contracts.model_v1 import VersionRef
from maskline.contracts.subjects import GATEWAY
from maskline.services.gateway.core.answers import ANSWERS, ETAG, LOCATION, OCTETS, Answers
from maskline.services.gateway.core.auth import MEMBERS_IF, ROLE
from maskline.services.gateway.core.bodies import RAW_BODY, STREAMED_BODY, limit_of, limited, raw
from maskline.services.gateway.core.errors import Conflict, NotFound, PayloadTooLarge, Unprocessable
from maskline.services.gateway.core.intake import Intake
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.data.datasets import NAME_REFUSALS
from maskline.services.gateway.data.datasets import prefix as dataset_prefix
from maskline.services.gateway.models.evaluations import evaluations_of
from maskline.services.gateway.models.sharing import OwnerParam
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared import keys
from maskline.shared.bus import Bus
from maskline.shared.kv import entries
from maskline.shared.models.access import copyable_by
from maskline.shared.models.registry import ModelNotFound, ModelRegistry
from maskline.shared.models.rounds import BUCKET, held_decoder
from maskline.shared.storage import ObjectNotFound
from maskline.shared.tenants.trails import events, job_trail

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
#: How long starting a run waits for the audit to record its opening (what every later read is told by).
RECORDED_WITHIN_S = 10.0
#: The events a federated run is told by.
RUN_EVENTS = (model_v1.ROUND_OPENED, model_v1.UPDATE_SUBMITTED, model_v1.ROUND_CLOSED, model_v1.FAILED)
#: No such run, or not one the caller takes part in (`_run`, `Run`).
_NO_RUN = NotFound.coded("federation_not_found")


#: Starting a run or sending a site's update hands weights (or what the tenant's data taught them)
#: to other tenants: a grant, so the owner's, or a member's where the owners allowed grants.
SHARES_MODELS = {ROLE: "owner", MEMBERS_IF: "grants"}


class Run:
    """A federated run as its events tell it."""

    def __init__(self, federation: str, owner: str, events: list[Envelope[Any]]) -> None:
        self.federation, self.owner, self.events = federation, owner, events
        opened = [e.data for e in events if isinstance(e.data, model_v1.RoundOpened)]
        if not opened:
            raise NotFound(f"no federation {federation}", code="federation_not_found")
        self.first: model_v1.RoundOpened = opened[0]
        self.current: model_v1.RoundOpened = max(opened, key=lambda o: o.round)

    def may_see(self, tenant: str) -> bool:
        return tenant == self.owner or tenant in self.first.sites

    async def view(self, registry: ModelRegistry, store: Store) -> FederationView:
        rounds: dict[int, dict[str, Any]] = {}
        error, status = None, "running"
        for env in self.events:
            d = env.data
            if isinstance(d, model_v1.RoundOpened):
                rounds.setdefault(d.round, {})["opened"] = d.opened_at or env.time
            elif isinstance(d, model_v1.SiteUpdate):
                reported = rounds.setdefault(d.round, {}).setdefault("reported", {})
                reported.setdefault(d.site, SiteReport(site=d.site, samples=d.samples, metrics=d.metrics))
            elif isinstance(d, model_v1.RoundClosed):
                rounds.setdefault(d.round, {}).update(model=d.model, missing=list(d.missing), sites=d.sites)
                status = "completed" if d.final else status
            elif isinstance(d, JobFailed):
                error = JobError(stage=d.stage, code=d.code, reason=d.reason)
                status = "stopped" if d.code == "stopped" else "failed"
        history = []
        for number, r in sorted(rounds.items()):
            model = r.get("model")
            reported = r.get("reported", {})
            merged = set(r.get("sites", reported))
            history.append(
                RoundView(
                    round=number,
                    opened=r.get("opened"),
                    reported=[reported[s] for s in sorted(reported) if s in merged],
                    missing=r.get("missing", [s for s in self.first.sites if s not in reported]),
                    model=model,
                    evaluation=await self._evaluation(registry, store, model) if model is not None else None,
                )
            )
        base = f"/v1/federations/{self.federation}?owner={self.owner}"
        return FederationView(
            id=self.federation,
            owner=self.owner,
            name=self.first.name,
            sites=self.first.sites,
            quorum=self.first.quorum,
            rounds=self.first.rounds,
            method=self.first.method,
            status=status,
            round=self.current.round,
            history=history,
            error=error,
            links={"self": base, "audit": f"/v1/audit?job={self.federation}"},
        )

    async def _evaluation(self, registry: ModelRegistry, store: Store, ref: VersionRef) -> model_v1.Evaluation | None:
        if not self.first.evaluate_on:
            return None
        try:
            model = await registry.get(self.owner, ref.name, ref.version)
        except Exception:
            return None
        found = [e for e in await evaluations_of(store, self.owner, model) if e.dataset == self.first.evaluate_on]
        return found[0] if found else None


async def visible_run(bus: Bus, tenant: str, federation: str, owner: str | None) -> Run:
    owner = owner or tenant
    if not _TOKEN.match(federation):
        raise NotFound(f"no federation {federation}", code="federation_not_found")
    run = Run(federation, owner, events(await job_trail(bus.js, owner, federation), RUN_EVENTS))
    if not run.may_see(tenant):
        raise NotFound(f"no federation {federation}", code="federation_not_found")  # not disclosed
    return run


async def _recorded(bus: Bus, owner: str, federation: str) -> None:
    """Answer a start once the audit trail, which every read of a run is told by, holds its opening:
    the owner's and the sites' first GET then finds it (within moments; at most RECORDED_WITHIN_S,
    after which the run is answered anyway and appears when the audit service catches up)."""
    deadline = asyncio.get_running_loop().time() + RECORDED_WITHIN_S
    while asyncio.get_running_loop().time() < deadline:
        if events(await job_trail(bus.js, owner, federation), (model_v1.ROUND_OPENED,)):
            return
        await asyncio.sleep(0.05)


class FederationController(Controller):
    path = "/v1/federations"
    tags = ["federation"]

    @get(summary="Federated runs you own or take part in, and where each stands")
    async def list_runs(self, bus: Bus, tenant: str) -> list[FederationSummary]:
        runs = []
        for key, value in sorted((await entries(bus.js, BUCKET)).items()):
            held = held_decoder.decode(value)
            if tenant != held.tenant and tenant not in held.current.sites:
                continue
            federation = key.split(".", 1)[1]
            c = held.current
            state = "stopped" if held.stopped else ("final" if c.round >= c.rounds else "closed") if held.closed else "open"
            runs.append(
                FederationSummary(
                    id=federation,
                    owner=held.tenant,
                    name=c.name,
                    round=c.round,
                    rounds=c.rounds,
                    sites=c.sites,
                    reported=len(held.updates),
                    state=state,
                    links={"self": run_path(federation, held.tenant)},
                )
            )
        return runs

    @post(
        status_code=HTTP_201_CREATED,
        summary="Start a federated run: round 1 opens for the named sites (it shares the model with them: owners)",
        opt={
            **SHARES_MODELS,
            ANSWERS: Answers(
                refusals=_NO_RUN + NAME_REFUSALS + Unprocessable.coded("model_not_copyable", "unprocessable"),
                headers={LOCATION: True},
            ),
        },
    )
    async def start(
        self,
        intake: Intake,
        models: ModelLookup,
        registry: ModelRegistry,
        store: Store,
        bus: Bus,
        fresh_job_id: str,
        tenant: str,
        data: FederationBody,
    ) -> Response[FederationView]:
        intake.require_bus()
        start = await models.model(tenant, data.model.name, data.model.version, data.model.owner)
        if not copyable_by(tenant, start):  # the sites download it: a shared model is used, never handed on
            raise Unprocessable(
                f"{start.owner}/{start.name} is shared with you: a federation hands its weights to every site, "
                "so it starts from your own model or a public one",
                code="model_not_copyable",
            )
        try:
            opened = msgspec.convert(
                {
                    "round": 1,
                    "rounds": data.rounds,
                    "model": {"name": start.name, "version": start.version, "owner": start.owner},
                    "name": data.name,
                    "sites": list(data.sites),
                    "quorum": data.quorum or len(data.sites),
                    "deadline_s": data.deadline_s,
                    "method": data.method,
                    "weights": msgspec.to_builtins(start.weights),
                    "evaluate_on": dataset_prefix(tenant, data.evaluate_on) if data.evaluate_on else None,
                },
                model_v1.RoundOpened,
            )
        except msgspec.ValidationError as exc:
            raise Unprocessable(f"invalid federation: {exc}") from exc
        if not data.sites or opened.quorum > len(data.sites) or len(set(data.sites)) != len(data.sites):
            raise Unprocessable("name each site once, and a quorum of at most that many sites")
        federation = fresh_job_id  # kept by the request's Idempotency-Key: a retry opens no second run
        env = job_event(
            model_v1.ROUND_OPENED, GATEWAY, opened, tenant=tenant, job_id=federation, trace_id=new_trace_id(), parts=(1,)
        )
        await bus.publish(env)
        await _recorded(bus, tenant, federation)
        run = Run(federation, tenant, [env])
        return Response(
            await run.view(registry, store), status_code=HTTP_201_CREATED, headers={"Location": run_path(federation, tenant)}
        )

    @get(
        "/{federation:str}",
        summary="A federated run round by round: sites reported, merged versions, their evaluation",
        opt={ANSWERS: Answers(refusals=_NO_RUN)},
    )
    async def watch(
        self, registry: ModelRegistry, store: Store, bus: Bus, tenant: str, federation: str, owner: OwnerParam = None
    ) -> FederationView:
        return await (await visible_run(bus, tenant, federation, owner)).view(registry, store)

    @delete(
        "/{federation:str}",
        status_code=HTTP_202_ACCEPTED,
        summary="Stop a federated run (owner only): no more updates, no next round",
        opt={ANSWERS: Answers(refusals=_NO_RUN)},
    )
    async def stop(
        self, intake: Intake, registry: ModelRegistry, store: Store, bus: Bus, tenant: str, federation: str
    ) -> FederationView:
        run = await visible_run(bus, tenant, federation, None)
        intake.require_bus()
        stop = model_v1.FederationStopRequested(by=tenant)
        trace = run.events[0].trace_id
        await bus.publish(
            job_event(model_v1.FEDERATION_STOP_REQUESTED, GATEWAY, stop, tenant=tenant, job_id=federation, trace_id=trace)
        )
        return await run.view(registry, store)

    @get(
        "/{federation:str}/model",
        summary="The open round's global model, for a site to train (sites and owner)",
        opt={
            ANSWERS: Answers(
                refusals=_NO_RUN + NotFound.coded("model_not_copyable", "not_found"),
                files=(OCTETS,),
                headers={ETAG: True, "X-Round": True},
            )
        },
    )
    async def model(
        self, registry: ModelRegistry, store: Store, bus: Bus, tenant: str, federation: str, owner: OwnerParam = None
    ) -> Response[bytes]:
        run = await visible_run(bus, tenant, federation, owner)
        # What the registry holds for the round's model, never a key the round's event claims (an
        # outside publisher writes those); and only while its owner may still hand it out.
        ref = run.current.model
        try:
            model = await registry.get(ref.owner or run.owner, ref.name, ref.version)
        except ModelNotFound as exc:
            raise NotFound(f"round {run.current.round} of {federation} has no model to download") from exc
        if not copyable_by(run.owner, model):
            raise NotFound(f"round {run.current.round} of {federation} has no model to download", code="model_not_copyable")
        weights = model.weights
        try:
            body = await store.get(weights.key)
        except ObjectNotFound as exc:
            raise NotFound("the round's weights are gone from storage") from exc
        headers = {"X-Round": str(run.current.round), "ETag": f'"{weights.sha256}"'}
        return Response(body, media_type="application/octet-stream", headers=headers)

    @put(
        "/{federation:str}/rounds/{round:int}/update",
        status_code=HTTP_200_OK,
        summary="A site's trained weights for one round (raw body; the site is the caller's tenant; owners)",
        request_max_body_size=None,  # streamed under the model limit (bodies.py)
        opt={
            **SHARES_MODELS,
            STREAMED_BODY: "max_model_bytes",
            RAW_BODY: raw("The site's trained weights, streamed (up to MASKLINE_MAX_MODEL_BYTES)", OCTETS),
            ANSWERS: Answers(
                refusals=_NO_RUN
                + Conflict.coded("round_not_open")
                + PayloadTooLarge.coded("model_too_large")
                + Unprocessable.coded()
            ),
        },
    )
    async def update(
        self,
        intake: Intake,
        settings: GatewaySettings,
        store: Store,
        bus: Bus,
        tenant: str,
        federation: str,
        round: int,
        request: Request[Any, Any, Any],
        samples: Annotated[int, Parameter(query="samples", ge=1, description="training samples the update saw")],
        metrics: Annotated[str, Parameter(query="metrics", description="JSON object of local metrics")] = "{}",
        owner: OwnerParam = None,
    ) -> model_v1.SiteUpdate:
        run = await visible_run(bus, tenant, federation, owner)
        if tenant not in run.first.sites:
            raise NotFound(f"{tenant} is not a site of federation {federation}", code="federation_not_found")
        if round != run.current.round:
            raise Conflict(f"round {round} is not open: round {run.current.round} is", code="round_not_open")
        try:
            local = {str(k): float(v) for k, v in json.loads(metrics).items()}
        except (ValueError, AttributeError, TypeError) as exc:
            raise Unprocessable(f"metrics must be a JSON object of numbers: {exc}") from exc
        intake.require_bus()
        limit = limit_of(request, settings)

        def too_large(size: int) -> PayloadTooLarge:
            return PayloadTooLarge(f"an update of {size} bytes or more is over the limit of {limit}", code="model_too_large")

        # Streamed into the store (atomic: a refused body leaves any earlier update of the site as it was).
        ref = await store.put_stream(
            keys.site_update(run.owner, federation, round, tenant), limited(request, limit, too_large), "application/octet-stream"
        )
        update = model_v1.SiteUpdate(round=round, site=tenant, weights=ref, samples=samples, metrics=local)
        parts = (round, tenant, ref.sha256[:12])  # the same upload again: one event; another: ignored by weights
        await bus.publish(
            job_event(
                model_v1.UPDATE_SUBMITTED,
                GATEWAY,
                update,
                tenant=run.owner,
                job_id=federation,
                trace_id=run.events[0].trace_id,
                parts=parts,
            )
        )
        return update


def run_path(federation: str, owner: str) -> str:
    return f"/v1/federations/{federation}?owner={owner}"
