"""CLI verbs of model rollout: aliases, promotion, rollback, canary split and shadow.

maskline alias list MODEL                              every alias, its version, canary, shadow
maskline alias set MODEL ALIAS VERSION [--require-evaluation DATASET] [--require-shadow-agreement 0.98]
maskline alias rollback MODEL ALIAS                    back to the version it ran before
maskline alias rollout MODEL ALIAS [--canary V --percent P] [--shadow V]   (no options: clears both)
maskline alias guard MODEL ALIAS [--on-drift] [--max-error-rate 0.1] [--min-shadow-agreement 0.95] [--cooldown 3600]
maskline alias unguard MODEL ALIAS                     it no longer rolls itself back
maskline alias rm MODEL ALIAS
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from maskline.cli_conventions import Verb, usage_error, verbs
from maskline.client import JsonClient


def describe(view: dict[str, Any]) -> str:
    """One line per alias: what it runs, its split and its shadow's agreement so far."""
    a = view["alias"]
    parts = [f"{a['name']:<16} v{a['version']}"]
    if a.get("canary"):
        parts.append(f"canary v{a['canary']} {a['canary_percent']:g}%")
    if a.get("shadow"):
        shadow = view.get("shadow")
        figures = (
            f"{shadow['jobs']} requests, pixel agreement {shadow['pixel_agreement']:.4f}, mIoU {shadow['miou']:.4f}"
            if shadow
            else "no requests yet"
        )
        parts.append(f"shadow v{a['shadow']} ({figures})")
    if a.get("history"):
        parts.append(f"before: {', '.join(f'v{v}' for v in a['history'])}")
    if a.get("guard"):
        parts.append(f"guard tripped: {a['guard_tripped']}" if a.get("guard_tripped") else "guarded")
    return "  ".join(parts)


def cmd_alias(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    if args.action == "list":
        views = client.aliases(args.model, owner=args.owner)
        print(json.dumps(views, indent=2) if args.json else "\n".join(describe(v) for v in views))
        return 0
    if not args.alias:
        raise usage_error(f"alias {args.action} needs MODEL ALIAS")
    if args.action == "rm":
        client.delete_alias(args.model, args.alias)
        return 0
    if args.action == "set":
        if args.version is None:
            raise usage_error("alias set needs MODEL ALIAS VERSION")
        rule = {
            "require_metric": args.require_metric,
            "require_shadow_agreement": args.require_shadow_agreement,
            "require_evaluation": args.require_evaluation,
        }
        rule = {k: v for k, v in rule.items() if v is not None}
        if args.min_shadow_jobs is not None:
            rule["min_shadow_jobs"] = args.min_shadow_jobs
        view = client.promote(args.model, args.alias, args.version, **rule)
    elif args.action == "rollback":
        view = client.rollback(args.model, args.alias)
    elif args.action == "guard":
        rules = {"max_error_rate": args.max_error_rate, "min_shadow_agreement": args.min_shadow_agreement}
        if not (args.on_drift or any(v is not None for v in rules.values())):
            raise usage_error("alias guard needs a rule: --on-drift, --max-error-rate or --min-shadow-agreement")
        view = client.guard(
            args.model,
            args.alias,
            on_drift=args.on_drift,
            min_jobs=args.min_jobs,
            cooldown_s=args.cooldown,
            **{k: v for k, v in rules.items() if v is not None},
        )
    elif args.action == "unguard":
        view = client.unguard(args.model, args.alias)
    else:
        view = client.rollout(
            args.model, args.alias, canary=args.canary, canary_percent=args.percent if args.canary else 0.0, shadow=args.shadow
        )
    print(json.dumps(view, indent=2) if args.json else describe(view))
    return 0


def _options(alias: argparse.ArgumentParser) -> None:
    alias.add_argument("model")
    alias.add_argument("alias", nargs="?")
    alias.add_argument("version", nargs="?", type=int, help="the version the alias runs from now on")
    alias.add_argument("--owner", help="the owner of a model shared with you")
    alias.add_argument("--require-metric", help="refuse unless the version's metric (e.g. miou) is at least the current one's")
    alias.add_argument("--require-shadow-agreement", type=float, help="refuse unless it agreed this well as the shadow")
    alias.add_argument("--require-evaluation", help="refuse unless its mIoU on this dataset is at least the current one's")
    alias.add_argument("--min-shadow-jobs", type=int, help="with --require-shadow-agreement (default 20)")
    alias.add_argument("--canary", type=int, help="the canary version")
    alias.add_argument("--percent", type=float, default=10.0, help="the canary's share of requests (default 10)")
    alias.add_argument("--shadow", type=int, help="a version that runs on a copy of every request")
    alias.add_argument("--on-drift", action="store_true", help="roll back when the served version drifts from its evaluation")
    alias.add_argument("--max-error-rate", type=float, help="roll back when more of its jobs than this share fail")
    alias.add_argument("--min-shadow-agreement", type=float, help="roll back when its shadow agrees less than this")
    alias.add_argument("--min-jobs", type=int, default=30, help="jobs a guard's rule needs first (default 30)")
    alias.add_argument("--cooldown", type=float, default=3600.0, help="seconds after a change before a guard may act")


def add_parsers(sub: Any) -> None:
    rule = ("require_metric", "require_shadow_agreement", "require_evaluation", "min_shadow_jobs")
    verbs(
        sub,
        "alias",
        "model aliases: list, set, rollback, rollout, guard, unguard, rm",
        _options,
        {
            "list": Verb("a model's aliases and the versions they run", ("model", "owner")),
            "set": Verb(
                "create an alias or move it to VERSION (with an optional promotion rule)", ("model", "alias", "version", *rule)
            ),
            "rollback": Verb("return an alias to the version it ran before", ("model", "alias")),
            "rollout": Verb(
                "split an alias's traffic: a canary share, a shadow copy", ("model", "alias", "canary", "percent", "shadow")
            ),
            "guard": Verb(
                "let an alias roll itself back on drift, errors or shadow disagreement",
                ("model", "alias", "on_drift", "max_error_rate", "min_shadow_agreement", "min_jobs", "cooldown"),
            ),
            "unguard": Verb("stop an alias rolling itself back", ("model", "alias")),
            "rm": Verb("delete an alias", ("model", "alias")),
        },
        cmd_alias,
    )
