"""JSON Schema (draft 2020-12) of each document kind, exported from the pydantic models.

Why commit generated files: implementers in other languages (and reviewers of a change to the
protocol) read the schema, not Python. `python -m protocol.schemas.export` rewrites them and a
unit test fails when the committed files differ from what the models produce.

The schema states structure, types, lengths, patterns and the vocabularies (as enums). A few
rules that span members are only in the models and in SPEC: date_of_birth or age, a caregiver for
a child, attachment sizes after decoding, expires_at after obtained_at.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

from ..documents import DOCUMENT_MODELS, KINDS

__all__ = ["SCHEMA_DIALECT", "load_schema", "schema_filename", "schema_for", "schema_text"]

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def schema_filename(kind: str) -> str:
    """File name of the committed schema of `kind`, e.g. referral.v1.schema.json."""
    if kind not in KINDS:
        raise KeyError(kind)
    return f"{kind}.v1.schema.json"


def schema_for(kind: str) -> dict[str, Any]:
    """The schema of `kind` as the models produce it now."""
    model = DOCUMENT_MODELS[kind]
    body = model.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_DIALECT, "$id": f"urn:rssn:schema:{kind}:v1", **body}


def schema_text(kind: str) -> str:
    """The exact text of the committed file (stable key order, UTF-8, trailing newline)."""
    return json.dumps(schema_for(kind), indent=2, ensure_ascii=False) + "\n"


def load_schema(kind: str) -> dict[str, Any]:
    """The committed schema of `kind`, read from the package (for shells that serve it)."""
    text = resources.files(__name__).joinpath(schema_filename(kind)).read_text(encoding="utf-8")
    value: dict[str, Any] = json.loads(text)
    return value
