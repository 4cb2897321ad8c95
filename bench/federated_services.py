"""The merging study's independent-initialisation condition run through the real services: the
embedded stack, a federation started over HTTP, two sites (tenants with their own API keys) that
download each round's global model and upload their update, the weights service merging.

    python -m bench.federated_services [--rounds 5] [--epochs 3] [--seed 0]

The platform registers segmentation models, so the digits classifier travels wrapped as one: the
8x8 image in, its class logits at every pixel out (`DigitsAsSegmentation`); accuracy is read off
one pixel. Training and testing happen at the sites and here, as they would at a site.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from bench.federated_study import SOURCE, arguments, digits_data, site_inits, train
from maskline.client import JsonClient
from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.models.digits import DigitsClassifier as SmallCNN
from maskline.shared.config import load

LABELS = [str(d) for d in range(10)]
METHODS = ("avg", "max", "absmax")


class DigitsAsSegmentation(nn.Module):
    """N x 3 x 8 x 8 in (the platform's RGB input), N x 10 x 8 x 8 out: the class logits everywhere."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(x[:, :1])
        return logits[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])


def to_bytes(net: nn.Module) -> bytes:
    out = io.BytesIO()
    torch.jit.save(torch.jit.script(DigitsAsSegmentation(net).eval()), out)
    return out.getvalue()


def from_bytes(data: bytes) -> nn.Module:
    """The classifier inside a global model a site downloaded (TorchScript keeps its parameters)."""
    wrapped = torch.jit.load(io.BytesIO(data))  # type: ignore[no-untyped-call]
    net = SmallCNN()
    net.load_state_dict({k.removeprefix("net."): v for k, v in wrapped.state_dict().items()})
    return net.eval()


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net.eval()(x).argmax(1) == y).float().mean())


Data = list[tuple[torch.Tensor, torch.Tensor]]


def run(
    client: JsonClient,
    sites: list[JsonClient],
    name: str,
    method: str,
    inits: list[nn.Module],
    data: Data,
    args: argparse.Namespace,
    test: tuple[torch.Tensor, torch.Tensor],
) -> list[float]:
    """One federation over HTTP; the accuracy of each round's merged model on the test set."""
    with tempfile.NamedTemporaryFile(suffix=".pt") as start:
        start.write(to_bytes(inits[0]))
        start.flush()
        model = client.register_model(Path(start.name), name=name, labels=LABELS, input_size=(8, 8))
    view = client.start_federation(
        name=name,
        model={"name": name, "version": model["version"]},
        sites=["site-a", "site-b"],
        rounds=args.rounds,
        method=method,
        deadline_s=600,
    )
    federation, scores = view["id"], []
    starts = list(inits)
    for r in range(1, args.rounds + 1):
        for i, site in enumerate(sites):
            x, y = data[i]
            trained = train(starts[i], x, y, args.epochs, seed=100 * (r - 1) + i)
            site.submit_update(federation, r, to_bytes(trained), samples=len(y), owner="owner")
        if r < args.rounds:
            wait_until(lambda r=r: client.federation(federation)["round"] == r + 1, 120, f"round {r + 1}")  # type: ignore[misc]
            _, merged = sites[0].federation_model(federation, owner="owner")
        else:
            wait_until(lambda: client.federation(federation)["status"] == "completed", 120, "the last round")
            last = client.federation(federation)["history"][-1]["model"]
            merged = client.download_file("models", f"{last['name']}/{last['version']}")
        net = from_bytes(merged)
        scores.append(accuracy(net, *test))
        starts = [net, net]
    return scores


@contextlib.contextmanager
def study_stack() -> Iterator[tuple[JsonClient, list[JsonClient]]]:
    """The embedded stack with the study's tenants: the owner and two sites, each with its API key."""
    home = tempfile.mkdtemp(prefix="maskline-study-")
    settings = on_free_ports(load(StackSettings), home, api_keys="key-o:owner,key-a:site-a,key-b:site-b", log_level="warning")
    stack = Stack(settings)
    stack.up()
    try:
        owner = JsonClient(stack.gateway_url, api_key="key-o", timeout=120)
        yield owner, [JsonClient(stack.gateway_url, api_key=k, timeout=120) for k in ("key-a", "key-b")]
    finally:
        stack.down()


def main() -> None:
    args = arguments()
    d = digits_data(args.seed)
    x_tr, y_tr, x_te, y_te, splits = d.x_tr, d.y_tr, d.x_te, d.y_te, d.splits
    started = time.perf_counter()
    with study_stack() as (client, sites):
        print("## Through the services: independent initialisation, federations over HTTP\n")
        print(f"Command: `python -m bench.federated_services --rounds {args.rounds} --epochs {args.epochs} --seed {args.seed}`\n")
        print("| split | method | " + " | ".join(f"round {r}" for r in range(1, args.rounds + 1)) + " | source: first → last |")
        print("|---|---|" + "---|" * args.rounds + "---|")
        for split, parts in splits.items():
            data = [(x_tr[p], y_tr[p]) for p in parts]
            for method in METHODS:
                inits = site_inits(args.seed, True)
                scores = run(client, sites, f"study-{split.lower()}-{method}", method, inits, data, args, (x_te, y_te))
                first, last = SOURCE[split][method]
                source = f"{first}% → {last}%" if last is not None else f"{first}% → —"
                print(f"| {split} | {method} | " + " | ".join(f"{s:.1%}" for s in scores) + f" | {source} |", flush=True)
        print(f"\n(ran in {time.perf_counter() - started:.0f} s, stack start included, on the 2-core machine)")


if __name__ == "__main__":
    main()
