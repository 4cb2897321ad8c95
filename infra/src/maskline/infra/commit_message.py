"""The house rule for commit messages: a subject of at most 72 characters that says what changed,
then a blank line and the detail in the body. Long subjects were bodies crammed into one line:
`git log --oneline` and every tool that shows one line per commit cut them mid-sentence.

The `commit-msg` hook of `.pre-commit-config.yaml` runs it on every message (`just hooks`
installs it); `--range A..B` checks commits already made (before pushing, say)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

MAX_SUBJECT = 72
#: Subjects git writes itself (merges, reverts) or that a later rebase folds away.
_GENERATED = ("Merge ", 'Revert "', "fixup! ", "squash! ", "amend! ")


def problems(message: str) -> list[str]:
    """What is wrong with a commit message (empty: nothing). Lines git treats as comments are ignored."""
    lines = [line.rstrip() for line in message.splitlines() if not line.startswith("#")]
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        return ["the message is empty"]
    subject = lines[0]
    if subject.startswith(_GENERATED):
        return []
    found = []
    if len(subject) > MAX_SUBJECT:
        found.append(f"the subject has {len(subject)} characters (at most {MAX_SUBJECT}): move the detail into the body")
    if subject.endswith("."):
        found.append("the subject ends with a full stop")
    if len(lines) > 1 and lines[1]:
        found.append("the second line is not blank: a blank line separates the subject from the body")
    return found


def _messages(revisions: str) -> list[tuple[str, str]]:
    out = subprocess.run(["git", "log", "--format=%H%x00%B%x01", revisions], check=True, capture_output=True, text=True).stdout
    found = []
    for record in out.split("\x01"):
        if record.strip():
            sha, _, body = record.strip("\n").partition("\x00")
            found.append((sha[:10], body))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("message_file", nargs="?", help="the file git hands a commit-msg hook")
    parser.add_argument("--range", dest="revisions", help="check the commits of a revision range instead (origin/main..HEAD)")
    args = parser.parse_args(argv)
    if args.revisions:
        checked = _messages(args.revisions)
    elif args.message_file:
        checked = [("this commit", Path(args.message_file).read_text())]
    else:
        parser.error("name a message file or a --range")
    failed = 0
    for name, message in checked:
        for problem in problems(message):
            print(f"{name}: {problem}", file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
