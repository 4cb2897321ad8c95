"""The image recipe (`./dev images`, maskline.infra.images) and the Dockerfile agree: every
deployable has its target, the torch targets are the ones checked for a CPU build, the build
context leaves the virtual environments out. The builds themselves run in their own recipe."""

from __future__ import annotations

import re

import pytest

from maskline.contracts.subjects import SERVICES
from maskline.infra import images

pytestmark = pytest.mark.unit
DOCKERFILE = images.DOCKERFILE.read_text()


def stage(target: str) -> str:
    return DOCKERFILE.split(f"FROM base AS {target}\n", 1)[1].split("\nFROM ", 1)[0]


def test_every_service_the_cli_and_triton_have_a_target_the_recipe_builds() -> None:
    assert set(images.TARGETS) == {*SERVICES, "cli", "triton-cpu"}
    # ...and the stand-ins for compose's registry images (./dev compose), which no one ships.
    assert set(re.findall(r"^FROM base AS (\S+)$", DOCKERFILE, re.M)) == {*images.TARGETS, *images.STAND_INS}


def test_the_targets_that_install_torch_are_the_ones_checked_for_its_cpu_build() -> None:
    # models (the architectures), weights and quantize pull in torch; Triton's Python backend runs it.
    needs_torch = {t for t in images.TARGETS if re.search(r"\./models|services/weights|services/quantize| torch ", stage(t))}
    assert needs_torch == set(images.WITH_TORCH)
    for target in images.WITH_TORCH:  # the wheel comes from a bind mount, never a layer
        assert "--mount=type=bind,source=infra/docker/wheels,target=/wheels" in stage(target)


def test_the_build_context_leaves_out_what_would_make_it_gigabytes() -> None:
    ignored = (images.ROOT / ".dockerignore").read_text().split()
    assert {".git", "**/.venv*", "secrets"} <= set(ignored)


def test_images_are_local_names_compose_resolves_to() -> None:
    assert images.image("gateway") == f"localhost/maskline-gateway:{images.VERSION}"
