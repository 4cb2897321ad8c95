"""Every distribution builds a wheel that installs on Python 3.11 and later, typed (py.typed), with
complete metadata and dependency bounds the pinned environment satisfies; the contracts wheel ships
the published schemas and AsyncAPI document; a consumer type-checks against the installed client."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pyroma import projectdata, ratings
from trove_classifiers import classifiers as valid_classifiers

from maskline.contracts import schema

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
#: Every distribution of the workspace, as dev-requirements.txt installs them (`-e ./services/audit`).
FOLDERS = sorted(re.findall(r"^-e \./([\w/-]+)", (ROOT / "dev-requirements.txt").read_text(), re.MULTILINE))
VERSION = "0.2.0"


def pins() -> dict[str, str]:
    """constraints.txt: what `pip install -c constraints.txt -r dev-requirements.txt` installs."""
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            found[canonicalize_name(req.name)] = str(next(iter(req.specifier)).version)
    return found


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folder → its wheel. Built from copies (a build writes build/ and *.egg-info beside the
    sources), offline: no index, no build isolation (the venv's setuptools)."""
    tmp = tmp_path_factory.mktemp("wheels")
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, tmp / "src" / folder, ignore=ignore)
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation"]
    command += ["--wheel-dir", str(tmp / "out"), *(str(tmp / "src" / f) for f in FOLDERS)]
    built = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr
    by_name = {canonicalize_name(p.name.split("-")[0]): p for p in (tmp / "out").glob("*.whl")}
    return {folder: by_name[canonicalize_name(name_of(folder))] for folder in FOLDERS}


def name_of(folder: str) -> str:
    for line in (ROOT / folder / "pyproject.toml").read_text().splitlines():
        if line.startswith("name = "):
            return line.split('"')[1]
    raise AssertionError(f"{folder}/pyproject.toml names no distribution")


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode())


def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_every_distribution_is_found() -> None:
    assert len(FOLDERS) == 15 and {"contracts", "client", "shared", "models", "infra", "services/gateway"} <= set(FOLDERS)


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_wheel_requires_python_311_or_later_uncapped(folder: str, wheels: dict[str, Path]) -> None:
    meta = metadata(wheels[folder])
    assert meta["Requires-Python"] == ">=3.11"  # no upper cap: a new Python is the user's to try
    assert wheels[folder].name.endswith("-py3-none-any.whl")


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_wheel_is_typed(folder: str, wheels: dict[str, Path]) -> None:
    """Each regular package directly under the `maskline` namespace (or `maskline.services`) ships
    py.typed: PEP 561 puts the marker in the packages of a namespace, not in the namespace."""
    files = names(wheels[folder])
    packages = {n.rsplit("/", 1)[0] for n in files if n.endswith("/__init__.py")}
    tops = {p for p in packages if p.rsplit("/", 1)[0] not in packages}
    assert tops, f"{folder}: no package in the wheel"
    assert all(f"{p}/py.typed" in files for p in tops), sorted(p for p in tops if f"{p}/py.typed" not in files)
    assert "Typing :: Typed" in metadata(wheels[folder]).get_all("Classifier", [])


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_requirement_is_bounded_and_the_pins_satisfy_it(folder: str, wheels: dict[str, Path]) -> None:
    pinned = pins()
    for line in metadata(wheels[folder]).get_all("Requires-Dist", []):
        req = Requirement(line)
        if req.name.startswith("maskline"):
            assert str(req.specifier) == f"=={VERSION}", line  # the workspace releases together
            continue
        operators = {s.operator for s in req.specifier}
        assert operators & {">=", "=="}, f"{folder}: {line} has no lower bound"
        name = canonicalize_name(req.name)
        assert name in pinned, f"{folder}: {req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{folder}: {line} excludes the pinned {pinned[name]}"


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_metadata_is_complete(folder: str, wheels: dict[str, Path]) -> None:
    meta = metadata(wheels[folder])
    assert meta["Summary"] and meta["Author"] and meta["Keywords"]
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Description-Content-Type"] == "text/markdown" and len(meta.get_payload()) > 200
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL", []))
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    classifiers = meta.get_all("Classifier", [])
    assert set(classifiers) <= valid_classifiers, set(classifiers) - valid_classifiers
    assert {"Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.12"} <= set(classifiers)


@pytest.mark.parametrize("folder", ["client", "contracts"])
def test_pyroma_rates_the_public_distributions_ten(folder: str, wheels: dict[str, Path]) -> None:
    copy = wheels[folder].parent.parent / "src" / folder  # the copy the wheel was built from
    data = projectdata.get_data(str(copy))  # pyroma's own reading (a metadata build, not isolated)
    # The project publishes no contact address yet, and an invented one would be worse than none.
    rating, problems = ratings.rate(data, skip_tests=["AuthorEmail"])
    assert rating == 10, problems


def test_the_contracts_wheel_ships_what_we_publish(wheels: dict[str, Path]) -> None:
    published = "maskline/contracts/published"
    with zipfile.ZipFile(wheels["contracts"]) as archive:
        shipped = {
            n.removeprefix(f"{published}/"): archive.read(n).decode() for n in archive.namelist() if n.startswith(published)
        }
    expected = {f"schemas/{p.name}": p.read_text() for p in schema.SCHEMA_DIR.glob("*.json")}
    expected["asyncapi.json"] = schema.ASYNCAPI.read_text()
    assert len(expected) > 30 and shipped == expected


def test_the_site_program_lives_in_the_client_package(wheels: dict[str, Path]) -> None:
    files = {n for n in names(wheels["client"]) if not n.startswith("maskline_client-")}
    assert "maskline/client/site.py" in files
    assert all(n.startswith("maskline/client/") for n in files), files  # nothing loose in the namespace


@pytest.fixture(scope="module")
def installed(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a bare venv with the client and contracts wheels installed; their third-party
    requirements are this venv's (a .pth to its site-packages, whose editable maskline portions are
    not on the path: a .pth in a plain folder is not read)."""
    home = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home / "venv")], check=True, timeout=60)
    python = home / "venv" / "bin" / "python"
    script = "import sysconfig; print(sysconfig.get_path('purelib'))"
    where = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    site = Path(where.stdout.strip())
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site)]
    done = subprocess.run(
        [*install, str(wheels["client"]), str(wheels["contracts"])], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    (site / "repository-deps.pth").write_text(
        "\n".join(dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])) + "\n"
    )
    return python


def test_the_installed_client_reads_the_schemas_and_leaves_torch_alone(installed: Path) -> None:
    script = """
import json, sys
from importlib.resources import files
import maskline.client
published = files("maskline.contracts") / "published"
print(json.dumps({
    "from": maskline.client.__file__,
    "asyncapi": json.loads((published / "asyncapi.json").read_text())["asyncapi"],
    "schema": json.loads((published / "schemas" / "seg.v1.requested.json").read_text())["title"],
    "loaded": sorted(m for m in ("torch", "maskline.client.site", "maskline.shared") if m in sys.modules),
}))
"""
    ran = subprocess.run([installed, "-c", script], capture_output=True, text=True, timeout=60, cwd=installed.parents[2])
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["from"].startswith(str(installed.parents[2]))  # the wheel's copy, not the repository's
    assert seen["asyncapi"].startswith("3.") and seen["schema"] == "seg.v1.requested"
    assert seen["loaded"] == []  # the site program (torch, the runtime) is the `site` extra's


def test_a_consumer_type_checks_against_the_installed_client(installed: Path, tmp_path: Path) -> None:
    """mypy --strict resolves maskline.client through the installed wheel (its py.typed), so the
    answers are the contracts' types, not Any."""
    (tmp_path / "consumer.py").write_text(
        "from maskline.client import Client, ClientSettings\n\n"
        'with Client(ClientSettings(url="http://127.0.0.1:8080")) as client:\n'
        '    job = client.submit(b"png", filename="x.png", wait_s=1)\n'
        "    reveal_type(job)\n"
        "    reveal_type(job.timings_ms)\n"
    )
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    command = [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--python-executable", str(installed)]
    command += ["--cache-dir", str(tmp_path / "cache"), "consumer.py"]
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"}
    ran = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert 'Revealed type is "maskline.contracts.http_v1.SegmentationView"' in ran.stdout
    assert 'Revealed type is "dict[str, float]"' in ran.stdout
