"""CLI verbs of federated runs over HTTP: the owner starts, watches and stops; a site downloads the
round's model and submits its update with its own API key.

maskline federation start --name global --model shapes-unet:1 [--owner maskline] --sites a,b [--rounds 3] [--evaluate-on D]
maskline federation watch FED [--owner O]          rounds as they close (until the run ends)
maskline federation stop FED
maskline federation model FED --owner O --out global.pt      (a site)
maskline federation submit FED --owner O --round R --weights local.pt --samples N [--metrics '{"acc": 0.9}']
maskline federation train FED --owner O --dataset D [--hyperparameters '{"steps": 60}'] [--architecture pkg.mod:Class]
                                                   (a site: train every round here, on your dataset)
maskline federation untrain FED --owner O          (a site: stop training the rounds here)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from maskline.cli_conventions import Verb, usage_error, verbs
from maskline.client import JsonClient


def describe(view: dict[str, Any]) -> str:
    lines = [
        f"federation {view['id']} ({view['owner']}/{view['name']}): {view['status']}, round {view['round']} of {view['rounds']}, "
        f"sites {', '.join(view['sites'])}, quorum {view['quorum']}, {view['method']}"
    ]
    for r in view["history"]:
        merged = f"v{r['model']['version']}" if r.get("model") else "open"
        reported = ", ".join(f"{s['site']} ({s['samples']})" for s in r["reported"]) or "-"
        score = f"  mIoU {r['evaluation']['miou']:.4f}" if r.get("evaluation") else ""
        lines.append(f"  round {r['round']}: {merged}  reported: {reported}  missing: {', '.join(r['missing']) or '-'}{score}")
    if view.get("error"):
        lines.append(f"  {view['error']['code']}: {view['error']['reason']}")
    return "\n".join(lines)


def cmd_federation(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    if args.action == "start":
        name, _, version = (args.model or "").partition(":")
        if not (args.name and name and version.isdigit() and args.sites):
            raise usage_error("federation start needs --name, --model NAME:VERSION and --sites a,b")
        model = {"name": name, "version": int(version), **({"owner": args.owner} if args.owner else {})}
        body = {"name": args.name, "model": model, "sites": args.sites.split(","), "rounds": args.rounds}
        body |= {
            k: v for k, v in (("quorum", args.quorum), ("deadline_s", args.deadline_s), ("evaluate_on", args.evaluate_on)) if v
        }
        view = client.start_federation(**body)
    elif args.action == "watch":
        view = client.federation(args.federation, args.owner)
        while view["status"] == "running" and not args.once:
            time.sleep(2.0)
            view = client.federation(args.federation, args.owner)
    elif args.action == "stop":
        view = client.stop_federation(args.federation)
    elif args.action == "model":
        round_, weights = client.federation_model(args.federation, args.owner)
        Path(args.out).write_bytes(weights)
        print(f"round {round_}: {len(weights)} bytes to {args.out}")
        return 0
    elif args.action in ("train", "untrain"):
        return _site_training(client, args)
    else:
        metrics = json.loads(args.metrics) if args.metrics else {}
        weights = Path(args.weights).read_bytes()
        update = client.submit_update(
            args.federation, args.round, weights, samples=args.samples, metrics=metrics, owner=args.owner
        )
        print(json.dumps(update, indent=2) if args.json else f"submitted round {update['round']} as {update['site']}")
        return 0
    print(json.dumps(view, indent=2) if args.json else describe(view))
    return 0 if view["status"] in ("running", "completed") else 1


def _site_training(client: JsonClient, args: argparse.Namespace) -> int:
    if not args.owner:
        raise usage_error(f"federation {args.action} needs --owner (the run's owner)")
    if args.action == "untrain":
        client.withdraw_federation_training(args.federation, owner=args.owner)
        print(f"{args.federation}: its rounds are no longer trained here")
        return 0
    if not args.dataset:
        raise usage_error("federation train needs --dataset (one of your datasets with masks)")
    options: dict[str, Any] = {"hyperparameters": json.loads(args.hyperparameters)} if args.hyperparameters else {}
    if args.architecture:
        options["architecture"] = {"entrypoint": args.architecture}
    view = client.enrol_federation_training(args.federation, owner=args.owner, dataset=args.dataset, **options)
    started = f"; the open round's training is job {view['job']}" if view.get("job") else "; it starts when the next round opens"
    print(json.dumps(view, indent=2) if args.json else f"every round of {args.federation} trains here on {args.dataset}{started}")
    return 0


def _options(fed: argparse.ArgumentParser) -> None:
    fed.add_argument("federation", help="the run's id")
    fed.add_argument("--name", help="your model the merged versions are registered under")
    fed.add_argument("--model", help="the starting version, NAME:VERSION")
    fed.add_argument("--owner", help="start: the starting model's owner; a site: the run's owner")
    fed.add_argument("--sites", help="the tenants taking part, a,b,c")
    fed.add_argument("--rounds", type=int, default=1)
    fed.add_argument("--quorum", type=int)
    fed.add_argument("--deadline-s", type=float)
    fed.add_argument("--evaluate-on", help="one of your datasets with masks (every round's model is evaluated)")
    fed.add_argument("--once", action="store_true", help="print once, do not wait for the end")
    fed.add_argument("--out", default="global.pt", help="where to write the weights")
    fed.add_argument("--round", type=int, help="the round")
    fed.add_argument("--weights", help="the trained weights")
    fed.add_argument("--samples", type=int, default=1, help="training samples")
    fed.add_argument("--metrics", help="JSON object of local metrics")
    fed.add_argument("--dataset", help="a site: your dataset with masks that each round trains on")
    fed.add_argument("--hyperparameters", help='a site: JSON object of hyper-parameters, e.g. {"steps": 60, "batch": 32}')
    fed.add_argument("--architecture", help="a site: round 1 from your own initialisation of package.module:Class")


def add_parsers(sub: Any) -> None:
    start = ("name", "model", "owner", "sites", "rounds", "quorum", "deadline_s", "evaluate_on")
    verbs(
        sub,
        "federation",
        "federated runs: start, watch, stop; sites: model, submit, train, untrain",
        _options,
        {
            "start": Verb("start a federated run: round 1 opens for the named sites", start),
            "watch": Verb("follow a run round by round until it ends", ("federation", "owner", "once")),
            "stop": Verb("stop a run (the rounds merged so far stand)", ("federation",)),
            "model": Verb("a site: download the current round's model", ("federation", "owner", "out")),
            "submit": Verb(
                "a site: submit weights trained for a round", ("federation", "owner", "round", "weights", "samples", "metrics")
            ),
            "train": Verb(
                "a site: train every round here, on your dataset",
                ("federation", "owner", "dataset", "hyperparameters", "architecture"),
            ),
            "untrain": Verb("a site: stop training the rounds here", ("federation", "owner")),
        },
        cmd_federation,
    )
