"""adapter_progres_records_per_s: conversion of a generated 100,000-record proGres extract."""

from __future__ import annotations

import argparse
import statistics

from bench.run import measure


@measure("adapters")
def _adapters(args: argparse.Namespace) -> dict[str, float]:
    from adapters.bench import bench_progres

    runs = [bench_progres(100_000)["records_per_s"] for _ in range(max(1, min(args.repeat, 3)))]
    return {"adapter_progres_records_per_s": statistics.median(runs)}
