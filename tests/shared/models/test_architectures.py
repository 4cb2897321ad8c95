"""The one gate before a network class is imported and built (quantize and train go through it)."""

from __future__ import annotations

import pytest
from torch import nn

from maskline.contracts.model_v1 import Architecture
from maskline.shared.models.architectures import ArchitectureRefused, build

pytestmark = pytest.mark.unit
ALLOWED = ("maskline.models.",)


def test_a_network_class_of_an_allowed_package_is_built_with_its_kwargs() -> None:
    built = build(Architecture(entrypoint="maskline.models.starter.unet:UNet", kwargs={"classes": 3, "width": 4}), ALLOWED)
    assert isinstance(built, nn.Module) and built.head.out_channels == 3


@pytest.mark.parametrize(
    ("entrypoint", "kwargs"),
    [
        ("maskline.models.starter.train:main", {}),  # a callable, not a network class (it would exit)
        ("maskline.models.sam.__main__:export", {}),  # a program: importing it runs it
        ("os.path:join", {}),  # outside the allowed packages
        ("maskline.models.starter.unet:torch", {}),  # a module, not a class
        ("maskline.models.starter.unet:UNet", {"colours": 3}),  # a constructor that refuses its arguments
    ],
)
def test_anything_else_is_refused(entrypoint: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(ArchitectureRefused):
        build(Architecture(entrypoint=entrypoint, kwargs=kwargs), ALLOWED)
