"""`/v1/dlq`: dead letters (a tenant sees its own; operators see all) and re-drive.

A re-drive asks the service whose consumer gave up (over the NATS services API) to run its
handler on the letter once more; only when that succeeds is the letter removed."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get, post

from maskline.contracts import subjects as table
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import Caller
from maskline.services.gateway.core.errors import NotFound, Unavailable, Unprocessable
from maskline.shared.bus import Bus
from maskline.shared.operations import dlq
from maskline.shared.operations.dlq import Letter, LetterNotFound

#: How long a re-driven handler may run (a quantization takes minutes on a small CPU).
REDRIVE_TIMEOUT_S = 600.0


def _visible(caller: Caller, letter: Letter) -> bool:
    return caller.operator or letter.tenant == caller.tenant


def _service_of(durable: str) -> str | None:
    return next((service for service, _, name in table.all_durables() if name == durable), None)


class DeadLetterController(Controller):
    path = "/v1/dlq"
    tags = ["operations"]

    @get(summary="Dead letters, newest first")
    async def list_letters(self, bus: Bus, caller: Caller, limit: int = 200) -> list[Letter]:
        return [letter for letter in await dlq.letters(bus.js, min(max(limit, 1), 1000)) if _visible(caller, letter)]

    @post(
        "/{seq:int}/redrive",
        status_code=200,
        summary="Re-process a dead letter by its consumer (after fixing its cause)",
        opt={
            ANSWERS: Answers(
                refusals=Unprocessable.coded(
                    "not_redrivable", others="the consumer failed again: its failure's `code` (else `redrive_failed`)"
                )
                + Unavailable.coded()  # no instance of the service took it
            )
        },
    )
    async def redrive(self, bus: Bus, caller: Caller, seq: int) -> dict[str, Any]:
        if not 1 <= seq < 2**63:  # a stream sequence; anything else names no letter
            raise NotFound(f"no dead letter {seq}")
        try:
            letter, _ = await dlq.get(bus.js, seq)
        except LetterNotFound as exc:
            raise NotFound(str(exc)) from exc
        if not _visible(caller, letter):
            raise NotFound(f"no dead letter {seq}")
        service = _service_of(letter.consumer)
        if service is None:
            raise Unprocessable(f"dead letter {seq} of {letter.consumer} cannot be re-driven", code="not_redrivable")
        try:
            reply = await bus.nc.request(
                f"maskline.{service}.redrive", msgspec.json.encode({"seq": seq}), timeout=REDRIVE_TIMEOUT_S
            )
        except Exception as exc:  # no instance answered
            raise Unavailable(f"no {service} instance took the re-drive: {exc!r}") from exc
        outcome: dict[str, Any] = msgspec.json.decode(reply.data)
        if not outcome.get("ok"):
            raise Unprocessable(
                f"{letter.consumer} failed again on dead letter {seq}: {outcome.get('reason')}",
                code=str(outcome.get("code") or "redrive_failed"),
            )
        await dlq.remove(bus.js, seq)
        return {**outcome, "job_id": letter.job_id}
