"""Render and lint the hub's Helm chart with Helm's own Go SDK (helm-python-sdk), offline.

Why this helper: there is no `helm` binary here, but helm-python-sdk binds to Helm v4's Go
SDK (libhelm_c), so `helm lint`, the values schema and `helm template` run exactly as the
helm CLI would run them. tests/deploy runs this with the deploy tools venv's python:

    python render_chart.py CHART [VALUES_JSON] [--namespace NS] [--release NAME]

Prints one JSON object: {"lint": {...}, "manifests": {template path: rendered text}} or,
when the values are refused, {"error": "...", "kind": "<exception class>"} (exit 3).
"""

from __future__ import annotations

import argparse
import json
import sys

import helm_python as helm


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("chart")
    parser.add_argument("values", nargs="?", default="{}")
    parser.add_argument("--namespace", default="rssn")
    parser.add_argument("--release", default="rssn-hub")
    args = parser.parse_args()
    values = json.loads(args.values)
    lint = helm.lint(args.chart)
    try:
        with helm.Chart.load(args.chart) as chart:
            chart.validate_schema(values)
            manifests = chart.render(
                values, name=args.release, namespace=args.namespace, is_install=True
            )
    except helm.HelmError as exc:
        json.dump({"error": str(exc), "kind": type(exc).__name__}, sys.stdout)
        return 3
    json.dump(
        {"lint": lint, "manifests": manifests, "helm_sdk": helm.helm_sdk_version()}, sys.stdout
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
