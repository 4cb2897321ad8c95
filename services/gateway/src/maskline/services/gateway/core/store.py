"""The object store as a controller asks for it: `store: Store`.

Litestar checks every value it injects against the parameter's type, with isinstance; `ObjectStore`
is a Protocol, which isinstance cannot take (each request would end in a 500). `Store` is the same
type to mypy, and litestar leaves it unchecked.
"""

from __future__ import annotations

from typing import TypeAlias

from litestar.params import SkipValidation

from maskline.shared.storage import ObjectStore

Store: TypeAlias = SkipValidation[ObjectStore]
