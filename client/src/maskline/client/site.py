"""Reference site client for federated rounds: copy it into the system that owns the data, or
install it with `pip install "maskline-client[site]"` (torch and the runtime: the `site` extra, so
`import maskline.client` alone never loads them).

A site waits for `model.v1.round.opened` of its federation, downloads the global model named in
the event, trains it on data that never leaves the site, uploads the weights to object storage
and publishes its `model.v1.round.update.submitted` (sample count and local metrics included).
It connects with its own bus credential, bound to its tenant: it reads only its tenant's rounds
(an ordered consumer under one of the names the credential owns, `<identity>-<n>`, n = 1..8, no
durable of its own) and needs no registry access. Delivery is at least
once: re-running a round re-publishes the same message id, which the bus de-duplicates, and the
merge service ignores a second update from the same site anyway.

    client = SiteClient(bus, store, tenant="hospitals", federation="fed-1", site="hospital-a", train=my_train,
                        consumer="hospital-a-bus-1")  # its credential `hospital-a-bus` owns hospital-a-bus-1..8
    await client.run(until_round=5)
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import torch
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy

from maskline.contracts import model_v1
from maskline.contracts import subjects as table
from maskline.contracts.envelope import Envelope, job_event
from maskline.shared import keys
from maskline.shared.bus import Bus
from maskline.shared.storage import ObjectStore

#: train(model, round) -> (trained model, number of samples used, local metrics)
Train = Callable[[torch.jit.ScriptModule, int], tuple[torch.jit.ScriptModule, int, dict[str, float]]]
_opened = msgspec.json.Decoder(Envelope[model_v1.RoundOpened])


@dataclass
class SiteClient:
    bus: Bus
    store: ObjectStore
    tenant: str
    federation: str
    site: str
    train: Train
    consumer: str
    """The name of the consumer it reads rounds through: one its credential owns (`<identity>-<n>`,
    `maskline.contracts.subjects.external_consumers`), not used by another reader at the same time."""

    async def take_part(self, env: Envelope[model_v1.RoundOpened]) -> None:
        opened = env.data
        if opened.weights is None:
            raise ValueError(f"round {opened.round} of {self.federation} names no weights to download")
        module = torch.jit.load(io.BytesIO(await self.store.get(opened.weights.key)))  # type: ignore[no-untyped-call]
        trained, samples, metrics = self.train(module, opened.round)
        buffer = io.BytesIO()
        torch.jit.save(trained, buffer)
        key = keys.site_update(self.tenant, self.federation, opened.round, self.site)
        ref = await self.store.put(key, buffer.getvalue(), "application/x-torchscript")
        update = model_v1.SiteUpdate(round=opened.round, site=self.site, weights=ref, samples=samples, metrics=metrics)
        await self.bus.publish(
            job_event(
                model_v1.UPDATE_SUBMITTED,
                f"site:{self.site}",
                update,
                tenant=env.tenant,
                job_id=self.federation,
                trace_id=env.trace_id,
                parts=(opened.round, self.site),
            )
        )

    async def run(self, until_round: int, timeout_s: float = 600.0) -> None:
        """Take part in every round of the federation that lists this site, up to `until_round`."""
        opened = table.subject(model_v1.ROUND_OPENED)
        # A named ordered consumer filtered on this tenant's rounds: what the site's credential allows.
        config = ConsumerConfig(name=self.consumer, deliver_policy=DeliverPolicy.ALL)
        sub = await self.bus.js.subscribe(opened.wire(self.tenant), stream=opened.stream, ordered_consumer=True, config=config)
        deadline = time.monotonic() + timeout_s
        done = 0
        try:
            while done < until_round and time.monotonic() < deadline:
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except (NatsTimeoutError, TimeoutError):
                    continue
                env = _opened.decode(msg.data)
                if env.job_id == self.federation and self.site in env.data.sites:
                    await self.take_part(env)
                    done = max(done, env.data.round)
        finally:
            await sub.unsubscribe()
            with contextlib.suppress(Exception):  # the name is free for the next reader at once
                await self.bus.js.delete_consumer(opened.stream, self.consumer)
