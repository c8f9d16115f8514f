"""Per-app Prometheus registries and the /metrics route."""

from __future__ import annotations

import warnings

from fastapi import FastAPI
from prometheus_client import Counter

from common.metrics import metrics_route, new_registry

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _app(process_metrics: bool = True) -> tuple[FastAPI, Counter]:
    registry = new_registry(process_metrics=process_metrics)
    counter = Counter("rssn_test_messages_total", "Messages seen", ["code"], registry=registry)
    app = FastAPI()
    app.include_router(metrics_route(registry))
    return app, counter


def test_metrics_route_serves_text_format() -> None:
    app, counter = _app()
    counter.labels(code="accepted").inc(3)
    response = TestClient(app).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'rssn_test_messages_total{code="accepted"} 3.0' in response.text
    assert "process_cpu_seconds_total" in response.text or "python_info" in response.text


def test_registries_are_independent() -> None:
    # Same metric name in two apps of one process: no "Duplicated timeseries" error.
    app_a, counter_a = _app(process_metrics=False)
    app_b, _counter_b = _app(process_metrics=False)
    counter_a.labels(code="x").inc()
    assert 'code="x"' in TestClient(app_a).get("/metrics").text
    assert 'code="x"' not in TestClient(app_b).get("/metrics").text


def test_metrics_route_not_in_openapi() -> None:
    app, _ = _app(process_metrics=False)
    assert "/metrics" not in app.openapi()["paths"]
