"""Loading and validating mapping files (configuration, per instance).

Why: field names and option ids differ between deployments (Primero form-builder
fields get hashed suffixes, proGres option sets are Dynamics integers, service
types are instance GUIDs), so every value that crosses a system boundary goes
through a table an operator can read and change. A mapping is JSON; it may say
`"extends": "default"` to override only some entries of the shipped default.
Every problem in a file is reported at once, with its JSON path, before any
record is read: a half-valid mapping would otherwise fail records one by one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .base import InputError, MappingError

__all__ = [
    "concern_ids",
    "country_ids",
    "deep_merge",
    "language_ids",
    "load_mapping",
    "service_ids",
    "vocab_ids",
]

M = TypeVar("M", bound=BaseModel)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Objects merge key by key; anything else in `over` replaces. `null` deletes a key."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _read(path: Path) -> dict[str, Any]:
    from .io import read_json

    try:
        value = read_json(path)
    except InputError as exc:
        raise MappingError(path, [str(exc.detail) + (f" at line {exc.line}, column {exc.column}"
                                                     if exc.line else "")]) from exc
    if not isinstance(value, dict):
        raise MappingError(path, ["top level must be a JSON object"])
    return value


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_mapping(model: type[M], default_path: Path, path: Path | None) -> M:
    """Validate `path` (or the shipped default) against `model`; raise MappingError listing all problems."""
    raw = _read(default_path)
    shown = default_path
    if path is not None:
        over = _read(path)
        shown = path
        ext = over.pop("extends", None)
        if ext == "default":
            raw = deep_merge(raw, over)
        elif ext is None:
            raw = over
        else:
            raise MappingError(path, [f"extends: only \"default\" is supported, not {ext!r}"])
    raw.pop("extends", None)
    raw.pop("$comment", None)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_loc(err['loc'])}: {msg}")
        raise MappingError(shown, problems) from None


# --- protocol vocabularies, read once -------------------------------------------------------

def vocab_ids(name: str) -> frozenset[str]:
    from protocol import vocab

    return vocab.ids(name)


def service_ids() -> frozenset[str]:
    return vocab_ids("services")


def concern_ids() -> frozenset[str]:
    return vocab_ids("concerns")


def country_ids() -> frozenset[str]:
    return vocab_ids("countries")


def language_ids() -> frozenset[str]:
    return vocab_ids("languages")


def check_values(table: dict[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    """Pydantic helper: every target value in an option table must be a protocol id."""
    bad: list[str] = []
    for key, target in table.items():
        targets = target if isinstance(target, list) else [target]
        for t in targets:
            if t not in allowed:
                bad.append(f"{key!r} -> {t!r}")
    if bad:
        raise ValueError(f"not a protocol {what}: " + ", ".join(bad[:10])
                         + (f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""))
    return table


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)
