"""Keyed hooks: the small registries that let each application plug into shared tools.

Mappers (by ``MODEL.META_ARCHITECTURE``), evaluators (by a dataset's ``evaluator_type``) and demo
renderers (by meta-architecture) are plain dicts filled through a decorator made here.
"""
from __future__ import annotations

from typing import Callable


def keyed_register(table: dict[str, Callable], what: str) -> Callable:
    """A decorator factory: ``register(key)(fn)`` puts ``fn`` in ``table`` under ``key``.

    Registering a key twice raises ``KeyError`` naming ``what`` (e.g. "a mapper factory") and
    the key: two applications claiming one name is a bug, not something to resolve silently.
    """

    def register(key: str):
        def deco(fn):
            if key in table:
                raise KeyError(f"{what} for {key!r} is already registered")
            table[key] = fn
            return fn

        return deco

    return register
