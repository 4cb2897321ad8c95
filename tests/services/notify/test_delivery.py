"""One webhook delivery: its host resolved once, every address checked, and the connection made to
the address that was checked, whatever the name answers a moment later (DNS rebinding); IPv6 forms
that embed a private IPv4 address are private. A real receiver on loopback takes the deliveries."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
import standardwebhooks

from maskline.contracts import seg_v1
from maskline.contracts.common_v1 import ModelRef, Webhook
from maskline.contracts.envelope import command
from maskline.infra.receiver import Receiver
from maskline.services.notify.service import Notifier, WebhookFailed
from maskline.services.notify.settings import NotifySettings
from maskline.shared.errors import PermanentError
from maskline.shared.tenants import webhooks

pytestmark = pytest.mark.unit


class Hook:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.receiver = Receiver(self._on_post)

    def _on_post(self, headers: dict[str, str], body: bytes) -> int:
        self.received.append((headers, body))
        return 200


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.receiver.close()


class OneTarget:
    """The tenant's webhook record, as the `webhooks` bucket would answer it."""

    def __init__(self, url: str) -> None:
        self.record = Webhook(url=url, secret=webhooks.new_secret(), created="now")

    async def for_job(self, tenant: str, job_id: str) -> Webhook:
        return self.record


class Rebinding:
    """A name server that answers `answers` in turn: the first is what was checked."""

    def __init__(self, *answers: str) -> None:
        self.answers, self.asked = list(answers), 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked += 1
        return [self.answers[min(self.asked, len(self.answers)) - 1]]


def completed() -> object:
    ref = ModelRef(name="m", version=1)
    data = seg_v1.SegmentationCompleted(artifacts={}, model=ref, width=1, height=1, regions=0)
    return command(seg_v1.COMPLETED, "merge", data, tenant="t1")


async def test_a_delivery_resolves_once_and_connects_where_it_checked(hook: Hook) -> None:
    resolver = Rebinding("127.0.0.1", "192.0.2.1")  # asked again, the name would lead elsewhere
    target = OneTarget(f"http://hooks.example:{hook.receiver.port}/hook")
    notifier = Notifier(NotifySettings(webhook_allow_private=True), target, jobs=None, resolve=resolver)  # type: ignore[arg-type]
    env = completed()
    await notifier.handle(env)  # type: ignore[arg-type]
    assert resolver.asked == 1 and len(hook.received) == 1
    headers, body = hook.received[0]
    assert headers["Host"] == f"hooks.example:{hook.receiver.port}"  # the receiver sees the name it was given
    assert standardwebhooks.Webhook(target.record.secret).verify(body, headers)["job_id"] == env.job_id  # type: ignore[attr-defined]


async def test_a_name_that_answered_public_then_private_never_reaches_the_private_address(hook: Hook) -> None:
    resolver = Rebinding("93.184.216.34", "127.0.0.1")  # checked: a public address (unreachable here); then: loopback
    target = OneTarget(f"http://rebind.example:{hook.receiver.port}/hook")
    settings = NotifySettings(webhook_allow_private=False, webhook_timeout_s=1.0)
    notifier = Notifier(settings, target, jobs=None, resolve=resolver)  # type: ignore[arg-type]
    with pytest.raises(WebhookFailed):  # it went (only) to the address it checked, which does not answer here
        await notifier.handle(completed())  # type: ignore[arg-type]
    assert resolver.asked == 1 and hook.received == []


async def test_a_name_that_answers_a_private_address_is_refused_for_good(hook: Hook) -> None:
    for private in ("127.0.0.1", "::ffff:127.0.0.1", "::7f00:1", "169.254.169.254", "fd00::1"):
        target = OneTarget(f"http://inside.example:{hook.receiver.port}/hook")
        notifier = Notifier(NotifySettings(), target, jobs=None, resolve=Rebinding(private))  # type: ignore[arg-type]
        with pytest.raises(PermanentError) as err:
            await notifier.handle(completed())  # type: ignore[arg-type]
        assert err.value.code == "webhook_refused", private
    assert hook.received == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "::",
        "fe80::1",
        "fd12:3456::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::7f00:1",  # IPv4-compatible (deprecated, still routed by some stacks)
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 around 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
        "64:ff9b:1::7f00:1",  # local-use NAT64 around 127.0.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo around 127.0.0.1
        "ff02::1",
        "224.0.0.1",
    ],
)
def test_private_addresses_in_every_form_are_refused(address: str) -> None:
    assert not webhooks.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "2002:808:808::1", "64:ff9b::808:808"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert webhooks.is_public(ipaddress.ip_address(address))
