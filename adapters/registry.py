"""Adapter discovery through the `rssn.adapters` entry-point group.

Why entry points: a partner ships an adapter as its own package (a pure mapping
module plus a thin reader) and it appears in `rssn-node adapters` without any
change to node/ or hub/. The three built-in adapters are registered the same way
in this project's pyproject.toml; if the package metadata is missing (running
from a source tree that was never installed) they are still found.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

from .base import Adapter

__all__ = ["AdapterInfo", "available", "get_adapter"]

GROUP = "rssn.adapters"
_BUILTIN = {
    "primero": "adapters.primero:adapter",
    "progres": "adapters.progres:adapter",
    "spreadsheet": "adapters.spreadsheet:adapter",
}


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    name: str
    target: str
    description: str
    formats: tuple[str, ...]
    error: str | None = None


def _entry_points() -> dict[str, str]:
    found = dict(_BUILTIN)
    for ep in metadata.entry_points(group=GROUP):
        found[ep.name] = ep.value
    return found


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = __import__(module, fromlist=["_"])
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj() if isinstance(obj, type) else obj


def available() -> list[AdapterInfo]:
    out: list[AdapterInfo] = []
    for name, target in sorted(_entry_points().items()):
        try:
            a = _load(target)
            if not isinstance(a, Adapter):
                raise TypeError("does not implement adapters.base.Adapter")
            out.append(AdapterInfo(name, target, a.description, tuple(a.formats)))
        except Exception as exc:  # a broken third-party adapter must not hide the others
            out.append(AdapterInfo(name, target, "", (), f"{type(exc).__name__}: {exc}"))
    return out


def get_adapter(name: str) -> Adapter:
    target = _entry_points().get(name)
    if target is None:
        raise KeyError(name)
    a = _load(target)
    if not isinstance(a, Adapter):
        raise TypeError(f"{target} does not implement adapters.base.Adapter")
    return a
