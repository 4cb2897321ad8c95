"""The merging study's independent-initialisation condition with the sites' training done by the
platform: each site consents to train every round on its own dataset (uploaded once, as a site
would), and every round's training is a train job of the site's own tenant whose weights go to the
round as its update. Nothing is trained here; this script only uploads, starts, waits and scores.

    python -m bench.federated_training [--rounds 5] [--epochs 3] [--seed 0]

Round 1 trains each site's `maskline.models.digits:DigitsSegmenter` from its own initialisation,
seeded as the in-process study seeds its sites (so the two start from the same weights); later
rounds from the merged global model. The optimiser matches the study's (Adam, 5e-3, batches of 32,
`--epochs` passes of the site's data as steps); the batches are drawn by the train service, so the
figures differ from the in-process table in the way two shuffles do.
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.federated_services import study_stack
from bench.federated_study import SOURCE, arguments, digits_data
from maskline.client import JsonClient
from maskline.infra.embedded.process import wait_until
from maskline.models.digits import LABELS, DigitsSegmenter

METHODS = ("avg", "max", "absmax")
ARCHITECTURE = "maskline.models.digits:DigitsSegmenter"
SITES = ("site-a", "site-b")


def png(array: np.ndarray[Any, Any]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def upload(site: JsonClient, dataset: str, x: torch.Tensor, y: torch.Tensor) -> None:
    """The site's digits as a segmentation dataset: the grey image as RGB, a mask filled with its class."""
    pixels = (x[:, 0].numpy() * 255.0).round().astype(np.uint8)
    for i, (image, label) in enumerate(zip(pixels, y.numpy(), strict=True)):
        site.upload_dataset_file(dataset, "images", png(np.repeat(image[:, :, None], 3, axis=2)), f"d{i}.png")
        site.upload_dataset_file(dataset, "masks", png(np.full((8, 8), int(label), np.uint8)), f"d{i}.png")


def accuracy(weights: bytes, x: torch.Tensor, y: torch.Tensor) -> float:
    """Of a registered global model, read off one pixel, on the test images as serving prepares them."""
    module = torch.jit.load(io.BytesIO(weights)).eval()  # type: ignore[no-untyped-call]
    prepared = (x * 255.0).round() / 255.0  # the PNG round trip the sites' data took
    with torch.no_grad():
        return float((module(prepared.expand(-1, 3, -1, -1))[:, :, 0, 0].argmax(1) == y).float().mean())


def run(
    owner: JsonClient, sites: list[JsonClient], split: str, method: str, sizes: list[int], args: Any, test: Any
) -> list[float]:
    torch.manual_seed(args.seed)
    with tempfile.NamedTemporaryFile(suffix=".pt") as start:
        torch.jit.save(torch.jit.script(DigitsSegmenter().eval()), start.name)
        name = f"study-{split.lower()}-{method}"
        labels = list(LABELS)
        model = owner.register_model(Path(start.name), name=name, labels=labels, input_size=(8, 8), architecture=ARCHITECTURE)
    view = owner.start_federation(
        name=f"{name}-global",
        model={"name": name, "version": model["version"]},
        sites=list(SITES),
        rounds=args.rounds,
        method=method,
        deadline_s=1800,
    )
    federation = view["id"]
    for i, site in enumerate(sites):
        hyper = {
            "optimiser": "adam",
            "learning_rate": 5e-3,
            "weight_decay": 0.0,
            "schedule": "constant",
            "batch": 32,
            "steps": args.epochs * math.ceil(sizes[i] / 32),
            "validation_share": 0.0,
            "flip": False,
            "seed": args.seed * 1000 + 17 + i,  # round 1's initialisation: the in-process study's site i
        }
        architecture = {"entrypoint": ARCHITECTURE}
        site.enrol_federation_training(
            federation, owner="owner", dataset=f"digits-{split.lower()}", hyperparameters=hyper, architecture=architecture
        )
    wait_until(lambda: owner.federation(federation)["status"] != "running", 1800, f"federation {federation}")
    view = owner.federation(federation)
    assert view["status"] == "completed", view
    scores = []
    for r in view["history"]:
        m = r["model"]
        scores.append(accuracy(owner.download_file("models", f"{m['name']}/{m['version']}"), *test))
    return scores


def main() -> None:
    args = arguments()
    torch.use_deterministic_algorithms(False)  # only scoring happens here
    d = digits_data(args.seed)
    started = time.perf_counter()
    with study_stack() as (owner, sites):
        sizes: dict[str, list[int]] = {}
        for split, parts in d.splits.items():
            for site, part in zip(sites, parts, strict=True):
                upload(site, f"digits-{split.lower()}", d.x_tr[part], d.y_tr[part])
            sizes[split] = [len(p) for p in parts]
        uploaded = time.perf_counter()
        print("## Through the services, sites training by train jobs: independent initialisation\n")
        print(f"Command: `python -m bench.federated_training --rounds {args.rounds} --epochs {args.epochs} --seed {args.seed}`\n")
        print("| split | method | " + " | ".join(f"round {r}" for r in range(1, args.rounds + 1)) + " | source: first → last |")
        print("|---|---|" + "---|" * args.rounds + "---|")
        for split in d.splits:
            for method in METHODS:
                scores = run(owner, sites, split, method, sizes[split], args, (d.x_te, d.y_te))
                first, last = SOURCE[split][method]
                source = f"{first}% → {last}%" if last is not None else f"{first}% → —"
                print(f"| {split} | {method} | " + " | ".join(f"{s:.1%}" for s in scores) + f" | {source} |", flush=True)
        trainings = 2 * len(METHODS) * len(d.splits) * args.rounds
        print(
            f"\n({trainings} train jobs; ran in {time.perf_counter() - started:.0f} s on the 2-core machine: "
            f"stack start and dataset uploads {uploaded - started:.0f} s, rounds {time.perf_counter() - uploaded:.0f} s)"
        )


if __name__ == "__main__":
    main()
