"""The hub's Helm chart: `helm lint`, the values schema and `helm template` run by Helm's own
Go SDK (helm-python-sdk, no helm binary needed), the output checked against the Kubernetes
OpenAPI schemas (kubernetes-validate, offline) and then read as YAML for the properties the
deployment relies on.

Not exercised here: installing into a cluster (no Kubernetes on this machine), the image
pull, the migration hook actually running, the Prometheus Operator's CRDs.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.tools import DEPLOY, explain, need_tool, run, tools_python

CHART = DEPLOY / "helm" / "rssn-hub"
RENDER = DEPLOY / "tools" / "render_chart.py"
ALL_ON = {
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "networkPolicy": {"enabled": True},
}

yaml = pytest.importorskip("yaml")


@cache
def _render_cached(values_json: str) -> dict[str, Any]:
    python = tools_python("helm_python", "PyPI helm-python-sdk")
    result = run([python, str(RENDER), str(CHART), values_json], timeout=300)
    assert result.returncode in (0, 3), explain(result)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def render(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return _render_cached(json.dumps(values or {}, sort_keys=True))


def objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = render(values)
    assert "error" not in out, out
    docs: list[dict[str, Any]] = []
    for path, text in sorted(out["manifests"].items()):
        if not path.endswith(".yaml"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_helm_lint_has_no_warnings_or_errors() -> None:
    lint = render()["lint"]
    assert lint["errors"] == []
    # Helm severities: 1 info ("icon is recommended"), 2 warning, 3 error.
    assert [m for m in lint["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": 0}, "/replicaCount"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"database": {"existingSecret": ""}}, "/database/existingSecret"),
        ({"hub": {"publicUrl": "hub.example.org"}}, "/hub/publicUrl"),
        ({"terminationGracePeriodSeconds": 10}, "terminationGracePeriodSeconds"),
    ],
)
def test_values_schema_refuses_unsafe_values(values: dict[str, Any], complaint: str) -> None:
    out = render(values)
    assert out.get("kind") == "HelmValuesError", out
    assert complaint in out["error"]


def test_rendered_manifests_pass_kubernetes_schemas(tmp_path: Path) -> None:
    validate = need_tool("kubernetes-validate", "PyPI kubernetes-validate")
    out = render({**ALL_ON, "autoscaling": {"enabled": True}})
    files = []
    for path, text in out["manifests"].items():
        if path.endswith(".yaml") and text.strip():
            target = tmp_path / path.replace("/", "_")
            target.write_text(text)
            files.append(str(target))
    for version in ("1.25.0", "1.37.0"):  # the chart's minimum kubeVersion, and recent
        result = run([validate, "--strict", "--quiet", "-k", version, *files])
        assert result.returncode == 0, explain(result)
        # Only the Prometheus Operator CRDs have no schema in the core set.
        unknown = [line for line in result.stdout.splitlines() if "Couldn't find schema" in line]
        assert all("monitoring.coreos.com" in line for line in unknown), unknown


def test_several_replicas_share_one_external_database() -> None:
    docs = objects()
    [deployment] = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # Secrets are files from the Secrets, never values in the manifest.
    assert "RSSN_HUB_DB" not in env and "RSSN_HUB_PASSPHRASE" not in env
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["secrets"]["readOnly"] is True
    files = {
        f"{mounts['secrets']['mountPath']}/{item['path']}": (src["secret"]["name"], item["key"])
        for src in volumes["secrets"]["projected"]["sources"]
        for item in src["secret"]["items"]
    }
    assert files[env["RSSN_HUB_DB_FILE"]] == ("rssn-hub-db", "url")
    assert files[env["RSSN_HUB_PASSPHRASE_FILE"]] == ("rssn-hub-passphrase", "passphrase")
    assert env["RSSN_HUB_PUBLIC_URL"] == "https://hub.example.org"
    assert container["args"][0] == "serve"
    # No PersistentVolumeClaim anywhere: replicas are stateless, the database holds everything.
    assert by_kind(docs, "PersistentVolumeClaim") == []
    assert all("persistentVolumeClaim" not in v for v in pod["volumes"])
    assert by_kind(docs, "StatefulSet") == []


def test_pods_are_non_root_read_only_and_probed() -> None:
    [deployment] = by_kind(objects(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # Long-polls (30 s) finish before the pod is killed.
    assert pod["terminationGracePeriodSeconds"] > 30
    assert "memory" in container["resources"]["limits"]


def test_service_pdb_and_spread_select_only_serving_pods() -> None:
    docs = objects()
    [deployment] = by_kind(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    [service] = by_kind(docs, "Service")
    [pdb] = by_kind(docs, "PodDisruptionBudget")
    [job] = by_kind(docs, "Job")
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    test_pods = [d for d in by_kind(docs, "Pod") if "test" in d["metadata"]["name"]]
    assert test_pods, "helm test pod missing"

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    assert selects(service["spec"]["selector"], pod_labels)
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    for other in [job_labels, *[p["metadata"]["labels"] for p in test_pods]]:
        assert not selects(service["spec"]["selector"], other), "Service would route to it"
        assert not selects(pdb["spec"]["selector"]["matchLabels"], other)
    keys = {c["topologyKey"] for c in deployment["spec"]["template"]["spec"][
        "topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


def test_migration_hook_runs_init_before_install_and_upgrade() -> None:
    [job] = by_kind(objects(), "Job")
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    assert hooks == {"pre-install", "pre-upgrade"}
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    # Pre-install hooks run before the chart's ServiceAccount exists.
    assert "serviceAccountName" not in spec
    [container] = spec["containers"]
    assert container["args"] == ["init"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_ingress_publishes_the_api_but_not_metrics() -> None:
    [ingress] = by_kind(objects(), "Ingress")
    [rule] = ingress["spec"]["rules"]
    paths = {p["path"] for p in rule["http"]["paths"]}
    assert "/v1" in paths and "/healthz" in paths
    assert "/metrics" not in paths and "/" not in paths and "/readyz" not in paths
    assert ingress["spec"]["tls"][0]["hosts"] == ["hub.example.org"]
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > 30
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "64m"


def test_autoscaling_replaces_fixed_replicas() -> None:
    docs = objects({"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5}})
    [deployment] = by_kind(docs, "Deployment")
    assert "replicas" not in deployment["spec"]
    [hpa] = by_kind(docs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)


def test_optional_objects_are_off_by_default() -> None:
    kinds = {d["kind"] for d in objects()}
    assert kinds.isdisjoint({"ServiceMonitor", "PrometheusRule", "NetworkPolicy",
                             "HorizontalPodAutoscaler"})


def test_prometheus_rule_carries_exactly_the_alert_file(tmp_path: Path) -> None:
    source = DEPLOY / "prometheus" / "rssn-alerts.yml"
    copy = CHART / "files" / "rssn-alerts.yml"
    assert copy.read_text() == source.read_text(), (
        "deploy/helm/rssn-hub/files/rssn-alerts.yml must be a copy of "
        "deploy/prometheus/rssn-alerts.yml: cp deploy/prometheus/rssn-alerts.yml "
        "deploy/helm/rssn-hub/files/"
    )
    [rule] = by_kind(objects(ALL_ON), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(source.read_text())["groups"]
    [monitor] = by_kind(objects(ALL_ON), "ServiceMonitor")
    relabel = monitor["spec"]["endpoints"][0]["relabelings"][0]
    assert (relabel["targetLabel"], relabel["replacement"]) == ("job", "rssn-hub")
    # The rendered rules are still valid Prometheus rules.
    promtool = need_tool("promtool", "Debian package prometheus")
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = run([promtool, "check", "rules", str(rules_file)])
    assert result.returncode == 0, explain(result)


def test_network_policy_allows_ingress_controller_database_and_dns() -> None:
    [policy] = by_kind(objects(ALL_ON), "NetworkPolicy")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ports = [p["port"] for e in policy["spec"]["egress"] for p in e["ports"]]
    assert 5432 in ports and 53 in ports
