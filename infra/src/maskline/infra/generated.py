"""Files generated from the code's single sources of truth, written by a command and checked for
staleness by the same command with `--check` (`just lint`, and a test each)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def write_or_check(target: Path, text: str, argv: list[str] | None, command: str) -> int:
    parser = argparse.ArgumentParser(prog=command)
    parser.add_argument("--check", action="store_true", help=f"fail if {target.name} is stale")
    args = parser.parse_args(argv)
    if args.check:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: run {command}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


def known_names_module(doc: str, names: list[str], tail: str = "") -> str:
    """A generated module holding `KNOWN`, the frozenset of `names` (then `tail`, if any)."""
    body = "".join(f'        "{name}",\n' for name in names)
    return f'"""{doc}"""\n\nKNOWN: frozenset[str] = frozenset(\n    {{\n{body}    }}\n)\n{tail}'
