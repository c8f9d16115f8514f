"""Command-line logic for `rssn-node adapters | adapt | import | sync primero`.

node/cli.py only wires these functions to its typer app (and supplies the
callables that talk to the node): everything about reading, converting,
reporting and exit codes lives here, so an adapter run behaves the same from the
CLI, from tests and from the sync loop.

Exit codes: 0 every record converted; 1 some records rejected (the good ones are
still written, every rejected one is in the report); 2 the input or the mapping is
unusable (nothing is written).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TextIO

import orjson
import typer

from .base import (
    Adapter,
    Converted,
    ConvertOptions,
    InputError,
    MappingError,
    Outcome,
    Rejection,
    Skipped,
)
from .registry import AdapterInfo, available, get_adapter

__all__ = [
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNUSABLE",
    "RunSummary",
    "app",
    "convert_file",
    "list_adapters",
    "run_adapt",
    "run_import",
    "run_sync_primero",
]

EXIT_OK, EXIT_REJECTED, EXIT_UNUSABLE = 0, 1, 2
REPORT_COLUMNS = ("source_id", "field", "code", "reason")
#: inputs larger than this get a progress bar (when stderr is a terminal)
PROGRESS_BYTES = 1_000_000


@dataclass
class RunSummary:
    converted: int = 0
    rejected: int = 0
    skipped: int = 0
    sent: int = 0
    problems: list[Rejection | Skipped] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_REJECTED if self.rejected else EXIT_OK


def list_adapters() -> list[AdapterInfo]:
    """Installed adapters (entry-point group `rssn.adapters`)."""
    return available()


def print_adapters(out: TextIO | None = None) -> int:
    out = out or sys.stdout
    for info in list_adapters():
        if info.error:
            print(f"{info.name}\tBROKEN\t{info.target}\t{info.error}", file=out)
        else:
            print(f"{info.name}\t{','.join(info.formats)}\t{info.description}", file=out)
    return EXIT_OK


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _options(legal_basis: str | None, attested_by: str | None) -> ConvertOptions:
    from protocol.documents import LEGAL_BASES

    if (legal_basis is None) != (attested_by is None or not attested_by.strip()):
        raise ValueError("--legal-basis and --attested-by go together")
    if legal_basis is not None and legal_basis not in LEGAL_BASES:
        raise ValueError(f"--legal-basis must be one of {', '.join(LEGAL_BASES)}")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ConvertOptions(legal_basis=legal_basis,
                          attested_by=attested_by.strip() if attested_by else None,
                          attested_at=now if legal_basis else None)


def convert_file(adapter: Adapter, input_path: Path, mapping: Any,
                 options: ConvertOptions) -> Iterator[Outcome]:
    """Every outcome of every record of one input (raises InputError if the input is unusable)."""
    for record in adapter.read(input_path, mapping):
        yield from adapter.convert(record, mapping, options)


def _progress(input_path: Path) -> Any:
    try:
        big = input_path.stat().st_size > PROGRESS_BYTES
    except OSError:
        big = False
    if not (big and sys.stderr.isatty()):
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("converting"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


def _write_report(path: Path, rows: list[Rejection | Skipped]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r.row())
    os.replace(tmp, path)


def _prepare(system: str, mapping_path: Path | None, legal_basis: str | None,
             attested_by: str | None) -> tuple[Adapter, Any, ConvertOptions]:
    try:
        adapter = get_adapter(system)
    except KeyError:
        names = ", ".join(i.name for i in list_adapters())
        raise ValueError(f"no adapter {system!r} (installed: {names})") from None
    mapping = adapter.load_mapping(mapping_path)
    return adapter, mapping, _options(legal_basis, attested_by)


def _run(system: str, input_path: Path, mapping_path: Path | None, report_path: Path | None,
         legal_basis: str | None, attested_by: str | None,
         sink: Callable[[Converted], None], finish: Callable[[], None],
         abort: Callable[[], None]) -> tuple[int, RunSummary]:
    summary = RunSummary()
    try:
        adapter, mapping, options = _prepare(system, mapping_path, legal_basis, attested_by)
    except MappingError as exc:
        _err(str(exc))
        return EXIT_UNUSABLE, summary
    except (ValueError, TypeError) as exc:
        _err(str(exc))
        return EXIT_UNUSABLE, summary
    progress = _progress(input_path)
    task = None
    try:
        if progress is not None:
            progress.start()
            task = progress.add_task("convert", total=None)
        for outcome in convert_file(adapter, input_path, mapping, options):
            if isinstance(outcome, Converted):
                sink(outcome)
                summary.converted += 1
            elif isinstance(outcome, Rejection):
                summary.rejected += 1
                summary.problems.append(outcome)
            else:
                summary.skipped += 1
                summary.problems.append(outcome)
            if progress is not None and task is not None:
                progress.advance(task)
    except InputError as exc:
        abort()
        _err(str(exc))
        return EXIT_UNUSABLE, summary
    except BaseException:
        abort()
        raise
    finally:
        if progress is not None:
            progress.stop()
    finish()
    if report_path is not None:
        _write_report(report_path, summary.problems)
    else:
        for p in [p for p in summary.problems if isinstance(p, Rejection)][:20]:
            print(f"rejected {p.source_id}: {p.field}: {p.code}: {p.reason}", file=sys.stderr)
    print(f"{summary.converted} converted, {summary.rejected} rejected, "
          f"{summary.skipped} not referrals", file=sys.stderr)
    return summary.exit_code, summary


def run_adapt(system: str, input_path: Path, mapping_path: Path | None, out_path: Path,
              report_path: Path | None = None, legal_basis: str | None = None,
              attested_by: str | None = None) -> int:
    """`rssn-node adapt SYSTEM --input FILE [--mapping FILE] --out referrals.jsonl
    [--report report.csv] [--legal-basis B --attested-by NAME]`: convert without sending."""
    tmp = out_path.with_name(out_path.name + ".tmp")
    fh = tmp.open("wb")

    def sink(c: Converted) -> None:
        fh.write(orjson.dumps(c.document) + b"\n")

    def finish() -> None:
        fh.close()
        os.replace(tmp, out_path)

    def abort() -> None:
        fh.close()
        tmp.unlink(missing_ok=True)

    code, _ = _run(system, Path(input_path), Path(mapping_path) if mapping_path else None,
                   Path(report_path) if report_path else None, legal_basis, attested_by,
                   sink, finish, abort)
    return code


#: send(document, refs) -> the network referral id the node assigned
SendReferral = Callable[[dict[str, Any], dict[str, str]], str]


def run_import(system: str, input_path: Path, send: SendReferral,
               mapping_path: Path | None = None, report_path: Path | None = None,
               legal_basis: str | None = None, attested_by: str | None = None) -> int:
    """`rssn-node import SYSTEM --input FILE --to NODE_ID --data-dir DIR`: convert and hand
    every good document to `send` (node/ binds the recipient and its outbox).

    Conversion completes before anything is sent, so an unusable input sends nothing. A
    `send` failure is reported as a rejected record (code `send_failed`) and the run goes on.
    """
    good: list[Converted] = []
    code, summary = _run(system, Path(input_path), Path(mapping_path) if mapping_path else None,
                         None, legal_basis, attested_by, good.append, lambda: None,
                         good.clear)
    if code == EXIT_UNUSABLE:
        return code
    for c in good:
        try:
            send(c.document, {**c.refs, "source_id": c.source_id})
            summary.sent += 1
        except Exception as exc:
            summary.rejected += 1
            summary.problems.append(Rejection(c.source_id, "", "send_failed",
                                              f"node refused or unreachable ({type(exc).__name__})"))
    if report_path is not None:
        _write_report(Path(report_path), summary.problems)
    print(f"{summary.sent} sent", file=sys.stderr)
    return summary.exit_code


# ---------------------------------------------------------------------------------------------
# typer sub-app (node/cli.py may add it with app.add_typer or call the functions directly)
# ---------------------------------------------------------------------------------------------

app = typer.Typer(help="Case-system adapters (Primero, proGres, spreadsheets).",
                  no_args_is_help=True)


@app.command("adapters")
def _cmd_adapters() -> None:
    """List installed adapters."""
    raise typer.Exit(print_adapters())


@app.command("adapt")
def _cmd_adapt(
    system: Annotated[str, typer.Argument(help="adapter name (see `adapters`)")],
    input: Annotated[Path, typer.Option("--input", help="export, extract or payload file")],
    out: Annotated[Path, typer.Option("--out", help="referral documents, one JSON per line")],
    mapping: Annotated[Path | None, typer.Option("--mapping", help="instance mapping")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="CSV of rejections")] = None,
    legal_basis: Annotated[str | None, typer.Option("--legal-basis")] = None,
    attested_by: Annotated[str | None, typer.Option("--attested-by")] = None,
) -> None:
    """Convert records to referral documents without sending them."""
    raise typer.Exit(run_adapt(system, input, mapping, out, report, legal_basis, attested_by))


def main() -> None:  # pragma: no cover - for `python -m adapters.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


def run_sync_primero(data_dir: Path, url: str, send_referral: Any, poll_inbound: Any,
                     ack_inbound: Any = None, *, mapping_path: Path | None = None,
                     username: str | None = None, password: str | None = None,
                     token: str | None = None, interval: float = 60.0,
                     stop: Any = None, once: bool = False) -> int:
    """`rssn-node sync primero --data-dir DIR --url URL [--user U --password-env VAR | --token-env
    VAR] [--mapping FILE] [--interval S] [--once]`.

    node/ passes its callables: `send_referral(document, refs) -> referral id`,
    `poll_inbound() -> [InboundReferral | InboundDecision]`, `ack_inbound(event_id)`.
    Returns 2 on an unusable mapping, credentials or instance, else runs until `stop` is set
    (a threading.Event), or one round with `once=True` (exit 1 if the round had errors).
    """
    from .primero import adapter as primero
    from .primero.client import PrimeroClient, PrimeroError
    from .primero.sync import PrimeroSync

    try:
        mapping = primero.load_mapping(Path(mapping_path) if mapping_path else None)
        client = PrimeroClient(url, username=username, password=password, token=token)
        sync = PrimeroSync(Path(data_dir), client, mapping, send_referral, poll_inbound,
                           ack_inbound or (lambda _e: None))
    except (MappingError, ValueError, PrimeroError, OSError) as exc:
        _err(str(exc))
        return EXIT_UNUSABLE
    for w in sync.warnings:
        print(f"warning: {w}", file=sys.stderr)

    def report(stats: Any) -> None:
        print(f"sync: scanned {stats.scanned}, queued {stats.queued}, sent {stats.sent}, "
              f"refused {len(stats.rejected)}, cases written {stats.cases_written}, "
              f"decisions written {stats.decisions_written}, errors {len(stats.errors)}",
              file=sys.stderr)
        for r in stats.rejected:
            print(f"refused {r.source_id}: {r.field}: {r.code}: {r.reason}", file=sys.stderr)
        for e in stats.errors:
            print(f"error: {e}", file=sys.stderr)

    try:
        if once:
            stats = sync.poll_once()
            report(stats)
            return EXIT_REJECTED if stats.errors else EXIT_OK
        sync.run_forever(interval, stop, report)
        return EXIT_OK
    finally:
        sync.close()
        client.close()
