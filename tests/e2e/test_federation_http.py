"""Federation for people: the owner starts, watches and stops a run over HTTP; two sites (tenants with
their own API keys, no bus or store access) download each round's model and upload their updates;
every round's merged version is evaluated on the owner's held-out set."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from maskline.client import ApiError, JsonClient
from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from tests.e2e.conftest import AS_ANSWERED, Account, cli, sign_in, until
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e
START = {"name": "shapes-unet", "version": 1, "owner": "maskline"}


@pytest.fixture(scope="module")
def third_site(stack: Stack) -> Iterator[JsonClient]:
    c = JsonClient(stack.gateway_url, api_key="key-c", timeout=60, retry=AS_ANSWERED)
    yield c
    c.close()


def trained(weights: bytes, seed: int) -> bytes:
    """A site's 'training': the global model with a little noise, as if fine-tuned on its data."""
    module = torch.jit.load(io.BytesIO(weights))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.002)
    out = io.BytesIO()
    torch.jit.save(module, out)
    return out.getvalue()


def take_part(site: JsonClient, federation: str, round_: int, seed: int, samples: int) -> None:
    wait_until(lambda: site.federation(federation, "tenant-a")["round"] == round_, 60, f"round {round_} open")
    opened, weights = site.federation_model(federation, owner="tenant-a")
    assert opened == round_
    site.submit_update(
        federation, round_, trained(weights, seed), samples=samples, metrics={"acc": 0.9 + seed / 100}, owner="tenant-a"
    )


def test_a_run_over_http_with_two_sites_two_rounds_and_per_round_evaluation(
    browser: WebDriver,
    stack: Stack,
    client: JsonClient,
    other_tenant: JsonClient,
    third_site: JsonClient,
    console_owner: Account,
) -> None:
    rng = np.random.default_rng(77)
    for i in range(3):
        image, mask = shapes.sample(rng, 128)
        client.upload_dataset_file("fed-held-out", "images", png_bytes(image), f"h{i}.png")
        client.upload_dataset_file("fed-held-out", "masks", png_bytes(mask), f"h{i}.png")
    view = client.start_federation(
        name="http-global", model=START, sites=["tenant-b", "tenant-c"], rounds=2, deadline_s=120, evaluate_on="fed-held-out"
    )
    federation = view["id"]
    assert (view["status"], view["round"], view["quorum"]) == ("running", 1, 2)
    with pytest.raises(ApiError) as err:  # a site may watch and take part, not stop the run
        other_tenant.stop_federation(federation)
    assert err.value.status == 404

    for round_ in (1, 2):
        take_part(other_tenant, federation, round_, seed=round_, samples=100)
        take_part(third_site, federation, round_, seed=10 + round_, samples=300)
    wait_until(lambda: client.federation(federation)["status"] == "completed", 120, "the run completed")
    wait_until(lambda: all(r["evaluation"] for r in client.federation(federation)["history"]), 120, "every round evaluated")
    view = client.federation(federation)
    assert [r["round"] for r in view["history"]] == [1, 2]
    for r in view["history"]:
        assert r["model"]["name"] == "http-global" and r["missing"] == []
        assert {(s["site"], s["samples"]) for s in r["reported"]} == {("tenant-b", 100), ("tenant-c", 300)}
        assert r["evaluation"]["images"] == 3 and r["evaluation"]["miou"] > 0.8  # small noise: still the starter
    assert view["history"][1]["model"]["version"] == view["history"][0]["model"]["version"] + 1
    with pytest.raises(ApiError) as err:  # round 1 is closed: an update for it is refused at the door
        other_tenant.submit_update(federation, 1, b"late", samples=1, owner="tenant-a")
    assert err.value.problem["code"] == "round_not_open"

    listed = {run["id"]: run for run in other_tenant.http.get("/v1/federations").json()}  # a site sees the runs it is in
    assert listed[federation]["state"] == "final" and listed[federation]["round"] == 2
    watched = cli(stack, "federation", "watch", federation, "--once")
    assert watched.returncode == 0, watched.stderr
    assert "completed" in watched.stdout and watched.stdout.count("mIoU") == 2

    b = browser  # the dashboard: the run, its state and each round's mIoU on the held-out set
    sign_in(b, stack, console_owner, "/dashboard")
    row = f'#federations tr[data-federation="{federation}"]'
    until(
        b, lambda: b.find_elements(By.CSS_SELECTOR, row) and "completed" in b.find_element(By.CSS_SELECTOR, row).text, 20, "run"
    )
    shown = b.find_element(By.CSS_SELECTOR, f"{row} td.miou").text
    assert shown == " · ".join(f"{r['evaluation']['miou']:.3f}" for r in view["history"])
    b.execute_script("document.getElementById('federations').scrollIntoView()")  # for the kept screenshot


def test_the_owner_starts_and_stops_a_run_from_the_dashboard_and_no_round_closes_after(
    browser: WebDriver,
    stack: Stack,
    client: JsonClient,
    other_tenant: JsonClient,
    third_site: JsonClient,
    console_owner: Account,
) -> None:
    b = browser
    sign_in(b, stack, console_owner, "/dashboard")
    form = b.find_element(By.ID, "start-federation")
    values = {"name": "http-stopped", "model": "shapes-unet:1", "owner": "maskline", "sites": "tenant-b,site-x", "quorum": "2"}
    for name, value in values.items():
        form.find_element(By.NAME, name).send_keys(value)
    form.find_element(By.TAG_NAME, "button").click()
    rows = "#federations tbody tr"
    until(b, lambda: any("tenant-a/http-stopped" in r.text for r in b.find_elements(By.CSS_SELECTOR, rows)), 20, "the run")
    row = next(r for r in b.find_elements(By.CSS_SELECTOR, rows) if "tenant-a/http-stopped" in r.text)
    federation = str(row.get_attribute("data-federation"))
    view = client.federation(federation)
    assert (view["sites"], view["rounds"], view["quorum"], view["status"]) == (["tenant-b", "site-x"], 3, 2, "running")
    for call in (
        lambda: third_site.federation(federation, "tenant-a"),
        lambda: third_site.federation_model(federation, "tenant-a"),
    ):
        with pytest.raises(ApiError) as err:  # tenant-c is not a site of this run: it does not see it
            call()
        assert err.value.status == 404
    take_part(other_tenant, federation, 1, seed=5, samples=10)
    selector = f'#federations tr[data-federation="{federation}"] button.stop'
    b.execute_script(f"document.querySelector('{selector}').click()")  # the table re-renders every 2 s
    until(
        b,
        lambda: "stopped" in b.find_element(By.CSS_SELECTOR, f'#federations tr[data-federation="{federation}"]').text,
        20,
        "stopped",
    )
    time.sleep(2)
    view = client.federation(federation)
    assert view["status"] == "stopped" and view["error"]["code"] == "stopped" and "tenant-a" in view["error"]["reason"]
    assert view["round"] == 1 and view["history"][0]["model"] is None  # round 1 never merged
