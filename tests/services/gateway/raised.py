"""Which gateway errors a handler can make, read off its code: every `SomeGatewayError(...)` in the
handler and in the gateway's functions it calls, followed through parameters, `self`, dataclass
fields and local variables whose types are known (annotations, return types). Calls into other
packages (shared, contracts, libraries) are not followed: what they raise reaches the client only
through problems.py, which the OpenAPI document derives from the parts a route asks for.

An over-approximation on purpose (an error made and caught is counted): the document may list an
answer that a request cannot provoke, never miss one the code can send.
"""

from __future__ import annotations

import ast
import builtins
import collections.abc
import inspect
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from maskline.services.gateway.core.errors import GatewayError
from maskline.services.gateway.core.intake import Intake

GATEWAY = "maskline.services.gateway"
#: What admission answers (`Intake._refusal` builds the error from a `Refused`): read off its source too.
ADMISSION_MODULE = "maskline.shared.jobs.admission"


@dataclass(frozen=True)
class Raised:
    status: int
    code: str | None
    """None: decided at run time (a failed job's code, ...)."""
    where: str = ""
    retry_after: bool = False
    """Made with `retry_after_s`: answered with Retry-After."""

    @property
    def key(self) -> tuple[int, str | None]:
        return self.status, self.code


def raised_by(fn: Callable[..., Any], owner: type | None = None) -> set[Raised]:
    found: set[Raised] = set()
    _Walk(found).function(fn, owner)
    return found


@cache
def admission_refusals() -> frozenset[Raised]:
    """`Refused(429 | 503, code="...")` as shared/jobs/admission.py raises them."""
    module = __import__(ADMISSION_MODULE, fromlist=["_"])
    found = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Refused":
            status = node.args[0]
            code = next((k.value for k in node.keywords if k.arg == "code"), None)
            assert isinstance(status, ast.Constant) and isinstance(status.value, int), ast.unparse(node)
            assert isinstance(code, ast.Constant) and isinstance(code.value, str), ast.unparse(node)
            found.add(Raised(status.value, code.value, "admission"))
    return frozenset(found)


def _gateway_code(obj: Any) -> bool:
    return str(getattr(obj, "__module__", "") or "").startswith(GATEWAY)


def _class_of(hint: Any) -> type | None:
    """The class a hint names: `X`, `X | None`, `Annotated[X, ...]` → X."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _class_of(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        classes = [c for c in (_class_of(a) for a in typing.get_args(hint)) if c is not None and c is not type(None)]
        return classes[0] if len(classes) == 1 else None
    return hint if isinstance(hint, type) else None


def _returned(hint: Any) -> type | None:
    """What calling a value of this hint gives: `Callable[..., X]` → X."""
    if typing.get_origin(hint) is collections.abc.Callable:
        return _class_of(typing.get_args(hint)[-1])
    return None


def _hints(obj: Any) -> dict[str, Any]:
    """Type hints of a function or class, each evaluated on its own: one that cannot be (a name
    imported only under TYPE_CHECKING) is left out, not the others with it."""
    obj = getattr(obj, "__func__", obj)
    hints: dict[str, Any] = {}
    for holder in reversed(obj.__mro__) if isinstance(obj, type) else (obj,):
        if isinstance(holder, type):
            namespace, annotations = vars(sys.modules[holder.__module__]), vars(holder).get("__annotations__", {})
        else:
            namespace, annotations = getattr(holder, "__globals__", {}), getattr(holder, "__annotations__", {})
        for name, value in annotations.items():
            try:
                hints[name] = eval(value, dict(namespace)) if isinstance(value, str) else value
            except Exception:
                continue
    return hints


class _Walk:
    def __init__(self, found: set[Raised]) -> None:
        self.found = found
        self.seen: set[Any] = set()

    def function(self, fn: Any, owner: type | None) -> None:
        fn = inspect.unwrap(getattr(fn, "__func__", fn))
        if isinstance(fn, property):
            fn = fn.fget
        code = getattr(fn, "__code__", None)
        if code is None or code in self.seen or not _gateway_code(fn):
            return
        self.seen.add(code)
        if owner is Intake and fn.__name__ == "_refusal":
            self.found.update(admission_refusals())
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError):  # generated (a dataclass's __init__): nothing of ours in it
            return
        scope = _Scope(fn, owner, tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                self.call(node, scope)
            elif isinstance(node, ast.Name | ast.Attribute) and isinstance(node.ctx, ast.Load):
                # A function handed on (`asyncio.to_thread(check, ...)`, a callback) runs too.
                target, owner = scope.resolve(node)
                if inspect.isfunction(getattr(target, "__func__", target)):
                    self.function(target, owner)

    def call(self, node: ast.Call, scope: _Scope) -> None:
        target, owner = scope.resolve(node.func)
        if isinstance(target, type) and issubclass(target, GatewayError):
            self.found.update(self.made(target, node, scope))
        elif isinstance(target, type) and _gateway_code(target):
            self.function(vars(target).get("__init__"), target)
        elif callable(target) or isinstance(target, property):
            self.function(target, owner)

    def made(self, error: type[GatewayError], node: ast.Call, scope: _Scope) -> Iterator[Raised]:
        where = f"{scope.name}, line {scope.first_line + node.lineno - 1}"
        retry_after = any(k.arg == "retry_after_s" for k in node.keywords)
        code = next((k.value for k in node.keywords if k.arg == "code"), None)
        if code is None:
            yield Raised(error.status, error.code, where, retry_after)
            return
        for value in scope.values(code, node):
            yield Raised(error.status, value, where, retry_after)


class _Scope:
    """Names in one function: its globals, closure, parameters' and locals' types, `self`'s class."""

    def __init__(self, fn: Any, owner: type | None, tree: ast.AST) -> None:
        self.name = f"{fn.__module__}.{fn.__qualname__}"
        self.first_line = fn.__code__.co_firstlineno
        self.owner = owner or self._defining_class(fn)
        closure = inspect.getclosurevars(fn)
        self.names: dict[str, Any] = {**vars(builtins), **fn.__globals__, **closure.nonlocals}
        self.types: dict[str, Any] = {k: v for k, v in _hints(fn).items() if k != "return"}
        self.caught: dict[int, dict[str, list[type]]] = {}
        """Node (by id) → the exceptions caught by name around it (`except X as exc`)."""
        for node in ast.walk(tree):  # outer handlers first: an inner one names its own
            if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
                caught = self.evaluate(node.type)
                kinds = [k for k in (caught if isinstance(caught, tuple) else (caught,)) if isinstance(k, type)]
                for inner in ast.walk(node):
                    self.caught.setdefault(id(inner), {})[node.name] = kinds
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                kind = self.type_of_call(node.value)
                if kind is not None:
                    self.types.setdefault(node.targets[0].id, kind)

    @staticmethod
    def _defining_class(fn: Any) -> type | None:
        path = fn.__qualname__.split(".")
        found: Any = inspect.getmodule(fn)
        for part in path[:-1]:
            found = getattr(found, part, None)
        return found if isinstance(found, type) else None

    def evaluate(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.evaluate(node.value)
            return getattr(base, node.attr, None) if base is not None else None
        if isinstance(node, ast.Tuple):
            return tuple(self.evaluate(e) for e in node.elts)
        return None

    def type_of_call(self, node: ast.expr) -> type | None:
        """The type a call's result has, from the callee's return annotation (or a `Callable[..., X]` hint)."""
        if isinstance(node, ast.Await):
            node = node.value
        if not isinstance(node, ast.Call):
            return None
        if isinstance(node.func, ast.Name) and node.func.id in self.types:
            return _returned(self.types[node.func.id])
        target, _ = self.resolve(node.func)
        if isinstance(target, type):
            return target
        if callable(target) and _gateway_code(target):
            return _class_of(_hints(target).get("return"))
        return None

    def type_of(self, node: ast.expr) -> type | None:
        if isinstance(node, ast.Name):
            if node.id == "self":
                return self.owner
            if node.id in self.types:
                return _class_of(self.types[node.id])
            value = self.names.get(node.id)
            return value if isinstance(value, type) else None
        if isinstance(node, ast.Attribute):
            outer = self.type_of(node.value)
            if outer is not None:
                return _class_of(_hints(outer).get(node.attr))
        return None

    def resolve(self, func: ast.expr) -> tuple[Any, type | None]:
        """What a call calls, and the class it is a method of."""
        if isinstance(func, ast.Name):
            return self.names.get(func.id), None
        if isinstance(func, ast.Attribute):
            kind = self.type_of(func.value)
            if kind is not None:
                return inspect.getattr_static(kind, func.attr, None), kind
            module = self.evaluate(func.value)
            if isinstance(module, types.ModuleType):
                return getattr(module, func.attr, None), None
        return None, None

    def values(self, code: ast.expr, at: ast.AST) -> Iterator[str | None]:
        """The codes an expression can be: a literal, either branch of an `if`, the `code` of an
        exception caught by name (its class's and its subclasses'), else None (decided at run time)."""
        if isinstance(code, ast.Constant) and isinstance(code.value, str):
            yield code.value
        elif isinstance(code, ast.IfExp):
            yield from self.values(code.body, at)
            yield from self.values(code.orelse, at)
        elif (
            isinstance(code, ast.Attribute)
            and code.attr == "code"
            and isinstance(code.value, ast.Name)
            and code.value.id in self.caught.get(id(at), {})
        ):
            for caught in self.caught[id(at)][code.value.id]:
                for kind in _with_subclasses(caught):
                    own = vars(kind).get("code")
                    if isinstance(own, str):
                        yield own
        else:
            yield None


def _with_subclasses(kind: type) -> Iterator[type]:
    yield kind
    sub: type
    for sub in kind.__subclasses__():
        yield from _with_subclasses(sub)
