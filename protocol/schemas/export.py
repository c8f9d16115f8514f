"""Write protocol/schemas/<kind>.v1.schema.json for every document kind.

Run `python -m protocol.schemas.export` (or `make schemas`) after changing protocol/documents.py
or a vocabulary, and commit the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..documents import KINDS
from . import schema_filename, schema_text

__all__ = ["export", "main"]


def export(directory: Path | None = None) -> list[Path]:
    """Write one schema file per kind into `directory` (default: this package) and list them."""
    target = directory or Path(__file__).resolve().parent
    written = []
    for kind in KINDS:
        path = target / schema_filename(kind)
        path.write_text(schema_text(kind), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for path in export(Path(args[0]) if args else None):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
