"""The `maskline` command's conventions, read off its parser and run in-process (no servers): global
options anywhere, a help of its own for every action, exit codes with one meaning each, and shell
completion generated from the parser."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import stamina

from maskline.cli import main, parser
from maskline.cli_conventions import ExitCode, exit_code_for, subparsers
from maskline.client import ApiError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--url", "http://gw:1", "submit", "x.png"],
        ["submit", "x.png", "--json", "--url", "http://gw:1"],
        ["--url", "http://gw:1", "submit", "--json", "x.png"],
        ["models", "quantize", "m:1", "--dataset", "d", "--json", "--url", "http://gw:1"],
    ],
)
def test_global_options_are_taken_before_or_after_the_command(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    assert args.json is True and args.url == "http://gw:1"


def test_a_global_option_given_first_is_not_undone_by_the_command() -> None:
    args = parser().parse_args(["--api-key", "k1", "models", "list"])
    assert args.api_key == "k1" and args.json is False


def every_parser() -> list[argparse.ArgumentParser]:
    top = parser()
    return [top, *subparsers(top)]


def test_no_action_is_chosen_by_a_bare_word_without_help_of_its_own() -> None:
    for found in every_parser():
        positional_choices = [
            a for a in found._actions if a.dest == "action" and a.choices and not isinstance(a, argparse._SubParsersAction)
        ]
        assert not positional_choices, f"{found.prog}: an action chosen by a word has no help of its own"


def test_every_command_and_action_has_a_help_of_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    seen = 0
    for found in every_parser()[1:]:
        words = found.prog.split()[1:]
        with pytest.raises(SystemExit) as done:
            parser().parse_args([*words, "--help"])
        assert done.value.code == 0
        shown = capsys.readouterr().out
        assert shown.startswith(f"usage: {found.prog}") and (found.description or "") in shown
        seen += 1
    assert seen >= 55  # every command and every action of the verb commands


def test_an_action_lists_only_the_options_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["models", "graph", "--help"])
    shown = capsys.readouterr().out
    assert "--dataset" not in shown and "--per-tensor" not in shown and "--json" in shown
    args = parser().parse_args(["models", "graph", "m:1"])
    assert args.per_tensor is False and args.dataset is None  # the options it does not read keep their defaults


def test_exit_codes_have_one_meaning_each(tmp_path: Path) -> None:
    assert exit_code_for(ApiError(404, {"code": "model_not_found"})) == ExitCode.REFUSED == 3
    assert exit_code_for(ApiError(503, {"code": "bus_unavailable"})) == ExitCode.UNAVAILABLE == 4
    with pytest.raises(SystemExit) as usage:
        main(["files", "get", "a/b.png"])  # no --area: a wrong command line, found after parsing
    assert usage.value.code == ExitCode.USAGE
    with pytest.raises(SystemExit) as unknown:
        main(["no-such-command"])
    assert unknown.value.code == ExitCode.USAGE
    with stamina.set_testing(True, attempts=2), pytest.raises(SystemExit) as away:
        main(["--url", "http://127.0.0.1:9", "dlq", "list"])  # nothing listens on port 9
    assert away.value.code == ExitCode.UNAVAILABLE


def test_completion_is_generated_from_the_parser(tmp_path: Path) -> None:
    script = subprocess.run(
        [sys.executable, "-m", "maskline.cli", "completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert script.returncode == 0 and "complete" in script.stdout and "maskline" in script.stdout
    answer = tmp_path / "completions"
    line = "maskline models qua"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
    }
    subprocess.run([sys.executable, "-m", "maskline.cli"], env=env, capture_output=True, timeout=60)
    assert answer.read_text().split() == ["quantize"]
