"""Build every image the project ships, with podman, from `infra/docker/Dockerfile`'s targets on a
Debian base made from this machine's own apt sources: no registry is pulled from.

    python -m maskline.infra.images            # base (once), then every target; sizes and times
    python -m maskline.infra.images gateway    # some targets only
    python -m maskline.infra.images --rebuild-base

The base is Debian 12 (`mmdebstrap` from the host's apt sources, then `podman import`) with Python
3.11 and the host's extra certificate authorities (a network that re-signs TLS needs them for pip
inside builds): it is for this machine only, never to be pushed anywhere. Images are named
`localhost/maskline-<target>:<version>`, which compose's short names (`maskline-gateway:0.2.0`)
resolve to. podman reads `infra/podman/containers.conf` (runc, and container limits this kernel
accepts) without touching the host's own configuration. Results go to `docs/bench/images.json`.
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from maskline.infra.embedded.process import wait_until

ROOT = Path(__file__).resolve().parents[4]
#: The images carry the release of the code inside them (compose.yaml names the same).
VERSION = importlib.metadata.version("maskline")
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
WHEELS = ROOT / "infra" / "docker" / "wheels"
CONTAINERS_CONF = ROOT / "infra" / "podman" / "containers.conf"
RESULTS = ROOT / "docs" / "bench" / "images.json"
BASE = "localhost/maskline-base:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "libpython3.11", "ca-certificates", "passwd", "procps")
HOST_AUTHORITIES = "/usr/local/share/ca-certificates"
APT_SOURCES = ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")
#: Every deployable: the services, the operator's CLI (also compose's provision step), Triton on the CPU.
TARGETS = (
    "gateway",
    "ingest",
    "augment",
    "infer",
    "merge",
    "weights",
    "quantize",
    "train",
    "audit",
    "notify",
    "cli",
    "triton-cpu",
)
#: compose.yaml's registry images, made locally for `python -m maskline.infra.compose` (never shipped):
#: built on request or by the compose recipe, not by default.
STAND_INS = ("nats", "s3", "proxy", "prometheus")
#: What each stand-in answers when run once (its entrypoint's arguments, or a command).
STAND_IN_SMOKE = {
    "nats": ("--version",),
    "s3": ("--help",),
    "proxy": ("caddy", "version"),
    "prometheus": ("--version",),
}
#: Targets that install torch: their image must hold the CPU build, never a CUDA one.
WITH_TORCH = ("weights", "quantize", "train", "cli", "triton-cpu")
TORCH = "torch==2.13.0"


def image(target: str) -> str:
    return f"localhost/maskline-{target}:{VERSION}"


def podman(*args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    return subprocess.run(["podman", *args], env=env, check=check, text=True, capture_output=capture)


def podman_version() -> str:
    return podman("--version", capture=True).stdout.split()[-1]


def run_header(command: str) -> dict[str, str]:
    """What every recipe's JSON report starts with: how to rerun it, and on what."""
    return {"command": command, "machine": f"{platform.machine()}, {os.cpu_count()} cores, podman {podman_version()}"}


def exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def size_mb(name: str) -> float:
    return round(int(podman("image", "inspect", "--format", "{{.Size}}", name, capture=True).stdout.strip()) / 1e6, 1)


def apt_sources() -> str:
    for path in APT_SOURCES:
        if Path(path).is_file() and Path(path).read_text().strip():
            return path
    raise SystemExit("no apt sources found (/etc/apt/sources.list.d/debian.sources): the base is made from them")


def build_base() -> float:
    """Debian 12 with Python 3.11, made offline from the host's apt sources; seconds taken."""
    started = time.monotonic()
    tarball = ROOT / "build" / "maskline-base.tar"
    tarball.parent.mkdir(exist_ok=True)
    trust = f'cp {HOST_AUTHORITIES}/*.crt "$1{HOST_AUTHORITIES}/" 2>/dev/null; chroot "$1" update-ca-certificates'
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            f"--customize-hook={trust}",
            "bookworm",
            str(tarball),
            apt_sources(),
        ],
        check=True,
    )
    podman("import", "--change", 'CMD ["/bin/bash"]', str(tarball), BASE)
    tarball.unlink()
    return round(time.monotonic() - started, 1)


def torch_wheel() -> Path:
    """The CPU build of torch, where the Dockerfile's bind mount finds it: from pip's own sources
    first (this machine keeps one on disk), else PyTorch's CPU index."""
    WHEELS.mkdir(exist_ok=True)
    found = sorted(WHEELS.glob("torch-*+cpu-*.whl"))
    if found:
        return found[-1]
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(WHEELS)]
    for extra in ([], ["--index-url", "https://download.pytorch.org/whl/cpu"]):
        subprocess.run([*pip, *extra, f"{TORCH}+cpu"], check=False)
        found = sorted(WHEELS.glob("torch-*+cpu-*.whl"))
        if found:
            return found[-1]
    raise SystemExit(f"no CPU build of {TORCH} found (pip's sources, PyPI's CPU index): the images need one")


@dataclass
class Built:
    target: str
    image: str
    size_mb: float
    build_s: float
    smoke: str
    """What was run in the image once built, and what it answered."""


#: Imports every module of a service's package: the image holds all its code needs (a module left
#: out of the requirements would fail here, as tests/infra/test_distributions.py does without images).
IMPORT_ALL = (
    "import importlib, pkgutil, sys; package = importlib.import_module(sys.argv[1]);"
    "names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + '.')"
    " if not m.name.endswith('__main__')];"
    "[importlib.import_module(n) for n in names]; print(len(names), 'modules imported')"
)
TRITON_READY_S = 120.0


def smoke(target: str) -> str:
    """Run the image once: a service imports all of its modules, the CLI answers, Triton gets ready."""
    if target == "triton-cpu":
        return triton_ready()
    if target == "cli":
        return podman("run", "--rm", image(target), "--version", capture=True).stdout.strip()
    if target in STAND_IN_SMOKE:
        return podman("run", "--rm", image(target), *STAND_IN_SMOKE[target], capture=True).stdout.strip().splitlines()[0]
    package = f"maskline.services.{target}"
    return podman("run", "--rm", "--entrypoint", "python", image(target), "-c", IMPORT_ALL, package, capture=True).stdout.strip()


def triton_ready() -> str:
    """Start tritonserver with an empty model repository; seconds until /v2/health/ready answers."""
    name = f"maskline-triton-smoke-{os.getpid()}"
    started = time.monotonic()
    podman("run", "-d", "--rm", "--name", name, "--tmpfs", "/models", image("triton-cpu"), capture=True)
    ask = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"

    def ready() -> bool:
        return podman("exec", name, "python3", "-c", ask, capture=True, check=False).returncode == 0

    try:
        wait_until(ready, TRITON_READY_S, f"tritonserver in {image('triton-cpu')}")
        return f"tritonserver ready in {time.monotonic() - started:.1f} s"
    finally:
        podman("rm", "-f", name, capture=True, check=False)


def build(target: str) -> Built:
    started = time.monotonic()
    podman(
        "build",
        "--file",
        str(DOCKERFILE),
        "--target",
        target,
        "--build-arg",
        f"BASE={BASE}",
        # PyTorch's index is not reachable everywhere; the CPU wheel comes from infra/docker/wheels.
        "--build-arg",
        "PIP_EXTRA_INDEX_URL=",
        "--tag",
        image(target),
        str(ROOT),
    )
    took = round(time.monotonic() - started, 1)
    if target in WITH_TORCH:
        check_torch(target)
    return Built(target, image(target), size_mb(image(target)), took, smoke(target))


def ensure(targets: tuple[str, ...]) -> list[str]:
    """Build those of `targets` missing here (the base and torch's wheel first when needed)."""
    missing = [t for t in targets if not exists(image(t))]
    if missing and not exists(BASE):
        build_base()
    if any(t in WITH_TORCH for t in missing):
        torch_wheel()
    for target in missing:
        print(f"--- building {target}", flush=True)
        build(target)
    return missing


def check_torch(target: str) -> None:
    """A CUDA build of torch is several GB: refuse an image that got one."""
    probe = (
        "import importlib.metadata as m; print(m.version('torch'));"
        "print(sum(d.metadata['Name'].startswith('nvidia-cu') for d in m.distributions()))"
    )
    out = podman("run", "--rm", "--entrypoint", "python", image(target), "-c", probe, capture=True).stdout.split()
    if not out[0].endswith("+cpu") or out[1] != "0":
        raise SystemExit(f"{image(target)} holds torch {out[0]} with {out[1]} CUDA packages: not the CPU build")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskline.infra.images", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "targets", nargs="*", help=f"targets to build (default: all of {', '.join(TARGETS)}; stand-ins: {', '.join(STAND_INS)})"
    )
    parser.add_argument("--rebuild-base", action="store_true", help="make the Debian base again")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write sizes and times (JSON)")
    args = parser.parse_args(argv)
    if unknown := [t for t in args.targets if t not in (*TARGETS, *STAND_INS)]:
        parser.error(f"no such target: {', '.join(unknown)}")
    for tool in ("podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: `./dev images` installs it from Debian (as root), or apt-get install {tool}")
    base_s = build_base() if args.rebuild_base or not exists(BASE) else 0.0
    wheel = torch_wheel()
    made = f"made in {base_s:.0f} s" if base_s else "kept"
    print(f"base {BASE} ({made}), torch from {wheel.name}", flush=True)
    built = []
    for target in args.targets or TARGETS:
        print(f"--- {target}", flush=True)
        built.append(build(target))
        print(f"{built[-1].image}: {built[-1].size_mb} MB in {built[-1].build_s} s; {built[-1].smoke}", flush=True)
    report = {
        **run_header("python -m maskline.infra.images " + " ".join(argv if argv is not None else sys.argv[1:])),
        "base": {"image": BASE, "size_mb": size_mb(BASE), "made_s": base_s},
        "images": [asdict(b) for b in built],
        "wheels": [Path(w).name for w in glob.glob(str(WHEELS / "*.whl"))],
    }
    if not args.targets:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n| image | size MB | build s | run once |\n|---|---|---|---|")
    for b in built:
        print(f"| {b.image} | {b.size_mb} | {b.build_s} | {b.smoke} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
