"""Settings dataclasses as the one source of defaults and help texts.

Every settings dataclass documents each field with a string literal right below it (the
convention of this code base and of PEP 257's "attribute docstrings"). Python drops those
strings at run time, so `field_docs` reads them back from the class source; CLI options then take
their help text and default from the field (`doc`, `default`) instead of repeating them.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from functools import cache
from typing import Any


@cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: its attribute docstring} for a dataclass (and its dataclass bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # no source (frozen app): no help texts
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def doc(cls: type, name: str, extra: str = "") -> str:
    """The help text of `cls.name` (plus `extra`); an undocumented field is a programming error."""
    docs = field_docs(cls)
    if name not in docs:
        raise KeyError(f"{cls.__name__}.{name} has no docstring")
    return f"{docs[name]} {extra}".strip()


def default(cls: type, name: str) -> Any:
    """The default of `cls.name` (calling its default factory where it has one)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name}")
