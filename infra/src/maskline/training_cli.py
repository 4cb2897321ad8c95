"""CLI verbs of model development: training runs and their records.

maskline runs train --name NAME --dataset D (--base MODEL:V | --architecture PKG.MOD:CLASS --labels a,b --input-size H,W)
         [--steps --batch --lr --optimiser --schedule --loss --seed --freeze enc1.,enc2. --evaluate-on D --experiment E]
maskline runs sweep --name NAME --dataset D --base MODEL:V --space learning_rate=1e-4:1e-2:log --space optimiser=adamw,sgd
         [--trials 8 --parallel 2 --no-pruning]   Optuna (TPE) trials of a training, weak ones pruned
         [--promote ALIAS [--require-metric validation_miou | --require-evaluation D]]   then promote the best
maskline runs promote SWEEP ALIAS [--require-metric M | --require-evaluation D]
                                             point ALIAS at a finished sweep's best version, by the alias rule
maskline runs list [--experiment E]          finished runs, newest first, with their metrics
maskline runs show RUN                       a run's record: parent, data hash, hyper-parameters, curve
maskline runs compare RUN RUN...             side by side: what differs, metrics, the same curves or not
maskline runs reproduce RUN                  train again from the record; exit 0 when the curves match
maskline runs cancel JOB                     stop a training at its next checkpoint
"""

from __future__ import annotations

import argparse
from typing import Any

from maskline.cli_conventions import ExitCode, Verb, follow_job, print_result, usage_error, verbs
from maskline.client import JsonClient


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def row(run: dict[str, Any]) -> str:
    model = run["model"]
    made = f"{model['name']}:{model['version']:<4}" if model else "round update"  # a federation site's run
    hyper = run["hyperparameters"]
    return (
        f"{run['run'][:12]}  {made} {run.get('experiment') or '-':<16} "
        f"steps {hyper['steps']:<6} lr {hyper['learning_rate']:<8g} seed {hyper['seed']:<6} "
        f"loss {run['train_loss']:.4f}  val mIoU {_metric(run['validation_miou'])}  "
        f"held-out mIoU {_metric(run['evaluation_miou'])}  {run['device']} {run['seconds']:.0f} s"
    )


def comparison(view: dict[str, Any]) -> str:
    lines = [row(r) for r in view["runs"]]
    for name, values in view["differing"].items():
        lines.append(f"  {name:<18} " + "  |  ".join(values))
    verdict = "the same curves, exactly" if view["exact"] else f"largest difference {view['max_difference']:g}"
    lines.append(
        f"same data: {'yes' if view['same_data'] else 'NO'}; {verdict}; reproduced: {'yes' if view['reproduced'] else 'NO'}"
    )
    return "\n".join(lines)


def _hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "steps": args.steps,
        "batch": args.batch,
        "learning_rate": args.lr,
        "optimiser": args.optimiser,
        "schedule": args.schedule,
        "loss": args.loss,
        "seed": args.seed,
        "validation_share": args.validation_share,
        "validate_every": args.validate_every,
        "freeze": args.freeze.split(",") if args.freeze else None,
    }
    return {k: v for k, v in given.items() if v is not None}


def _choice(text: str) -> int | float | str:
    """A choice as the number it spells, else as text (`adamw`)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def search_space(specs: list[str]) -> dict[str, dict[str, Any]]:
    """`--space name=low:high[:log]` or `--space name=a,b,c` as the sweep's space."""
    space: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        parts = values.split(":")
        try:
            if len(parts) in (2, 3) and "," not in values:
                space[name] = {"low": float(parts[0]), "high": float(parts[1]), "log": parts[2:] == ["log"]}
            else:
                space[name] = {"choices": [_choice(v) for v in values.split(",")]}
        except ValueError as exc:
            raise usage_error(f"--space {spec!r}: name=low:high[:log] or name=a,b,c") from exc
    return space


def _training(args: argparse.Namespace) -> dict[str, Any]:
    if not args.name or not args.dataset:
        raise usage_error(f"runs {args.action} needs --name and --dataset")
    base = None
    if args.base:
        name, _, version = args.base.partition(":")
        if not version.isdigit():
            raise usage_error(f"--base is MODEL:VERSION, not {args.base!r}")
        base = {"name": name, "version": int(version), **({"owner": args.owner} if args.owner else {})}
    size = [int(v) for v in args.input_size.split(",")] if args.input_size else None
    body = {
        "name": args.name,
        "dataset": args.dataset,
        "base": base,
        "architecture": {"entrypoint": args.architecture} if args.architecture else None,
        "labels": args.labels.split(",") if args.labels else None,
        "input_size": size,
        "hyperparameters": _hyperparameters(args),
        "evaluate_on": args.evaluate_on,
        "experiment": args.experiment,
    }
    return {k: v for k, v in body.items() if v is not None}


def _train(client: JsonClient, args: argparse.Namespace) -> int:
    job = follow_job(client, args, client.train(**_training(args)), f"training {args.name}", args.wait)
    print_result(args, job, f"training {job['status']}: {job['links'].get('model', job['error'])} (run {job['id']})")
    return ExitCode.OK if job["status"] == "completed" else ExitCode.JOB_FAILED


def _sweep(client: JsonClient, args: argparse.Namespace) -> int:
    if not args.space:
        raise usage_error("runs sweep needs at least one --space")
    body = {"training": _training(args), "space": search_space(args.space), "trials": args.trials, "parallel": args.parallel}
    job = follow_job(client, args, client.sweep(**body, pruning=not args.no_pruning), f"sweep of {args.name}", args.wait)
    if job["status"] != "completed":
        print_result(args, job, f"sweep {job['status']}: {job['error']}")
        return ExitCode.JOB_FAILED
    runs = client.runs(args.experiment or f"sweep-{job['id'][:12]}")
    print_result(args, {"job": job, "runs": runs}, "\n".join(row(r) for r in runs) + f"\nbest: {job['links'].get('model', '-')}")
    return _promote_best(client, args, job["id"], args.promote) if args.promote else ExitCode.OK


def _promote_best(client: JsonClient, args: argparse.Namespace, sweep: str, alias: str) -> int:
    """Point `alias` at the sweep's best version through the alias API, so the promotion rule, its
    audit record and its rollback are the ones every promotion has (a refusal exits 3)."""
    best = client.sweep_trials(sweep).get("best")
    if not best or not best.get("model"):
        print_result(args, {"best": None}, f"sweep {sweep} has no complete trial to promote")
        return ExitCode.JOB_FAILED
    model = best["model"]
    rule = {k: v for k, v in (("require_metric", args.require_metric), ("require_evaluation", args.require_evaluation)) if v}
    view = client.promote(model["name"], alias, model["version"], **rule)
    value = f"validation mIoU {best['value']:.4f}" if best.get("value") is not None else "no validation mIoU"
    print_result(args, view, f"{model['name']}@{alias} -> version {model['version']} (trial {best['number']}, {value})")
    return ExitCode.OK


def cmd_runs(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    if args.action == "train":
        return _train(client, args)
    if args.action == "sweep":
        return _sweep(client, args)
    if args.action == "list":
        runs = client.runs(args.experiment)
        print_result(args, runs, "\n".join(row(r) for r in runs) if runs else "no finished runs")
        return ExitCode.OK
    if not args.runs:
        raise usage_error(f"runs {args.action} needs a run id")
    if args.action == "promote":
        if len(args.runs) != 2:
            raise usage_error("runs promote needs a sweep's job id and an alias: runs promote SWEEP ALIAS")
        return _promote_best(client, args, args.runs[0], args.runs[1])
    if args.action == "show":
        run = client.run(args.runs[0])
        curve = "\n".join(
            f"  step {p['step']:<6} loss {p['loss']:.4f}  lr {p['learning_rate']:.2e}  "
            f"val mIoU {_metric(p.get('validation_miou'))}"
            for p in run["curve"]
        )
        made = (
            f"{run['model']['name']}:{run['model']['version']}" if run["model"] else f"update to round {run['update']['round']}"
        )
        print_result(args, run, f"{run['run']}: {made} on {run['dataset']}\n{curve}")
        return ExitCode.OK
    if args.action == "cancel":
        job = client.cancel_training(args.runs[0])
        print_result(args, job, f"training {job['id']}: {job['status']}")
        return ExitCode.OK
    if args.action == "compare":
        view = client.compare_runs(args.runs)
        print_result(args, view, comparison(view))
        return ExitCode.OK
    job = follow_job(client, args, client.reproduce(args.runs[0]), f"reproducing {args.runs[0][:12]}", args.wait)
    if job["status"] != "completed":
        print_result(args, job, f"the reproduction {job['status']}: {job['error']}")
        return ExitCode.JOB_FAILED
    view = client.compare_runs([args.runs[0], job["id"]])
    print_result(args, view, comparison(view))
    return ExitCode.OK if view["reproduced"] else ExitCode.JOB_FAILED


def _options(runs: argparse.ArgumentParser) -> None:
    runs.add_argument(
        "runs", nargs="*", help="run ids (show, compare, reproduce), a training job (cancel), SWEEP ALIAS (promote)"
    )
    runs.add_argument("--name", help="train: the model the new version is registered under")
    runs.add_argument("--dataset", help="train: one of your datasets with masks")
    runs.add_argument("--base", help="train: fine-tune this version (MODEL:VERSION)")
    runs.add_argument("--owner", help="train: the owner of a base shared with you")
    runs.add_argument("--architecture", help="train from scratch: package.module:Class of an allowed package")
    runs.add_argument("--labels", help="train from scratch: comma-separated class names, background first")
    runs.add_argument("--input-size", help="train from scratch: H,W")
    runs.add_argument("--steps", type=int)
    runs.add_argument("--batch", type=int)
    runs.add_argument("--lr", type=float, help="learning rate")
    runs.add_argument("--optimiser", choices=["adamw", "adam", "sgd"])
    runs.add_argument("--schedule", choices=["constant", "cosine", "one-cycle", "step"])
    runs.add_argument("--loss", choices=["cross-entropy", "dice", "cross-entropy+dice"])
    runs.add_argument("--seed", type=int)
    runs.add_argument("--validation-share", type=float)
    runs.add_argument("--validate-every", type=int)
    runs.add_argument("--freeze", help="comma-separated parameter-name prefixes to keep as they are")
    runs.add_argument("--evaluate-on", help="train: a held-out dataset with masks the new version is evaluated on")
    runs.add_argument("--experiment", help="train: group the run; list: only this experiment's runs")
    runs.add_argument("--wait", type=float, default=3600.0, help="train, reproduce: seconds to follow the job")
    runs.add_argument("--space", action="append", default=[], help="sweep: name=low:high[:log] or name=a,b,c (repeat)")
    runs.add_argument("--trials", type=int, default=8, help="sweep: how many trials")
    runs.add_argument("--parallel", type=int, default=1, help="sweep: trials in flight at once")
    runs.add_argument("--no-pruning", action="store_true", help="sweep: let every trial run to its end")
    runs.add_argument("--promote", metavar="ALIAS", help="sweep: then point this alias at the best trial's version")
    runs.add_argument("--require-metric", help="promote: refuse unless the best's metric is at least the current version's")
    runs.add_argument("--require-evaluation", help="promote: refuse unless its mIoU on this dataset is at least the current's")


def add_parsers(sub: Any) -> None:
    training = (
        "name", "dataset", "base", "owner", "architecture", "labels", "input_size", "steps", "batch", "lr", "optimiser",
        "schedule", "loss", "seed", "validation_share", "validate_every", "freeze", "evaluate_on", "experiment", "wait",
    )  # fmt: skip
    verbs(
        sub,
        "runs",
        "training runs: train, sweep, promote, list, show, compare, reproduce, cancel",
        _options,
        {
            "train": Verb("fine-tune a version or train an architecture on a dataset (a job, followed)", training),
            "sweep": Verb(
                "Optuna trials of a training, weak ones pruned (a job)",
                (*training, "space", "trials", "parallel", "no_pruning", "promote", "require_metric", "require_evaluation"),
            ),
            "promote": Verb(
                "point an alias at a finished sweep's best version, by the alias rule",
                ("runs", "require_metric", "require_evaluation"),
            ),
            "list": Verb("finished runs, newest first, with their metrics", ("experiment",)),
            "show": Verb("a run's record and curve", ("runs",)),
            "compare": Verb("runs side by side: what differs, metrics, the same curves or not", ("runs",)),
            "reproduce": Verb("train again from a run's record and compare (exit 1 when it differs)", ("runs", "wait")),
            "cancel": Verb("stop a training at its next checkpoint", ("runs",)),
        },
        cmd_runs,
    )
