"""What every `maskline` command shares, so that no command has to remember it:

- **global options anywhere**: `--url`, `--api-key` and `--json` are accepted before or after the
  command (`maskline submit x.png --json` as well as `maskline --json submit x.png`);
- **actions with help of their own**: a command whose first word picks an action (`models quantize`,
  `alias set`) is a sub-command per action, showing only the options that action reads;
- **exit codes with one meaning each** (`ExitCode`, documented in docs/cli.md);
- **shell completion** generated from the parser by argcomplete (`maskline completion bash`).
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from maskline.client import ApiError, ClientSettings, JsonClient


class ExitCode(enum.IntEnum):
    """`maskline`'s exit status: one meaning each, for scripts."""

    OK = 0
    """Done: the job completed, the check passed."""
    JOB_FAILED = 1
    """The request was accepted, but the job failed or the check did not pass (a replay that differs)."""
    USAGE = 2
    """The command line is wrong (argparse's own convention)."""
    REFUSED = 3
    """The gateway refused the request (4xx: unknown model, bad image, no access)."""
    UNAVAILABLE = 4
    """The platform could not be reached or answered 5xx, after the retries."""


def exit_code_for(error: ApiError | httpx.TransportError) -> ExitCode:
    if isinstance(error, ApiError) and error.status < 500:
        return ExitCode.REFUSED
    return ExitCode.UNAVAILABLE


def print_result(args: argparse.Namespace, value: Any, human: str) -> None:
    """A command's answer: the JSON itself with `--json`, else the line(s) a person reads."""
    print(json.dumps(value, indent=2, default=str) if args.json else human)


def follow_job(
    client: JsonClient, args: argparse.Namespace, job: dict[str, Any], label: str, timeout: float = 1800.0
) -> dict[str, Any]:
    """Wait for a command job with a progress bar (stage and done/total as the job reports them;
    none with `--json`); its final view."""
    from rich.progress import Progress

    with Progress(disable=args.json) as bar:
        task = bar.add_task(label, total=None)

        def show(j: dict[str, Any]) -> None:
            stage = f"{label} [{j['stage']}]" if j.get("stage") else label
            bar.update(task, description=stage, completed=j["progress"].get("done", 0), total=j["progress"].get("total"))

        return client.wait_job(job["id"], timeout=timeout, on_progress=show)


def usage_error(message: str) -> SystemExit:
    """A wrong command line found after parsing: the message, and exit 2 like argparse's own."""
    print(f"maskline: error: {message}", file=sys.stderr)
    return SystemExit(ExitCode.USAGE)


def add_global_options(parser: argparse.ArgumentParser, *, at_top: bool) -> None:
    """The options every command takes. Below the top they default to SUPPRESS, so that a value
    given before the command is not overwritten by the sub-command's default."""
    env = ClientSettings.from_env()  # the same MASKLINE_* variables as the clients and the stack

    def default(value: Any) -> Any:
        return value if at_top else argparse.SUPPRESS

    parser.add_argument(
        "--url", default=default(env.url), help="gateway URL (default: MASKLINE_URL, else MASKLINE_HOST:MASKLINE_PORT)"
    )
    parser.add_argument("--api-key", default=default(env.api_key), help="default: MASKLINE_API_KEY, else dev-key")
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")


def subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser below `parser`, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield child
                yield from subparsers(child)


def global_options_everywhere(parser: argparse.ArgumentParser) -> None:
    for child in subparsers(parser):
        add_global_options(child, at_top=False)


@dataclass(frozen=True)
class Verb:
    help: str
    reads: tuple[str, ...] = ()
    """The destinations of the options (and positionals) this action reads; the others keep their defaults."""


def verbs(
    sub: Any,
    name: str,
    help: str,
    options: Callable[[argparse.ArgumentParser], object],
    actions: Mapping[str, Verb],
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """`maskline NAME ACTION ...`: one sub-command per action, each with its own help listing only
    the options it reads (taken from those `options` declares); `args.action` names the action."""
    declared = argparse.ArgumentParser(add_help=False)
    options(declared)
    by_dest = {action.dest: action for action in declared._actions}
    command: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    chosen = command.add_subparsers(dest="action", required=True, metavar="ACTION", title="actions")
    for verb, spec in actions.items():
        unknown = set(spec.reads) - set(by_dest)
        if unknown:
            raise ValueError(f"{name} {verb} reads undeclared options {sorted(unknown)}")
        parser = chosen.add_parser(verb, help=spec.help, description=spec.help)
        for dest in spec.reads:
            parser._add_action(by_dest[dest])
        defaults = {dest: action.default for dest, action in by_dest.items() if dest not in spec.reads}
        parser.set_defaults(run=run, **defaults)
    return command


def completion_script(shell: str) -> str:
    """The shell code that completes `maskline` from its parser (argcomplete)."""
    from argcomplete.shell_integration import shellcode

    return shellcode(["maskline"], shell=shell)
