"""`rssn-node services publish/show` against a real hub; the services reach the signed directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers.processes import base_env, free_port
from tests.node.conftest import unique_id
from tests.node.realhub import RealHub

EXAMPLE = Path(__file__).resolve().parents[2] / "hub/console/examples/services.example.json"
NODE_PASS = "node passphrase for services tests"


def node_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from node.cli import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=180, check=False)


def test_publish_show_and_directory(hub: RealHub, make_node, spawn_service, tmp_path: Path):
    node_id = unique_id("casa-mx")
    d = str(tmp_path / node_id)
    env = base_env({"RSSN_NODE_PASSPHRASE": NODE_PASS, "RSSN_NODE_POLL_WAIT": "2"})
    init = node_cli("init", "--data-dir", d, "--hub", hub.url, "--node-id", node_id,
                    "--token", hub.invite(node_id, "Casa Ejemplo", "MX"), env=env)
    assert init.returncode == 0, init.stderr
    before = node_cli("services", "show", "--data-dir", d, env=env)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["services"] == []

    example = json.loads(EXAMPLE.read_text("utf-8"))
    n = len(example["services"])
    names = sorted(s["name"] for s in example["services"])
    pub = node_cli("services", "publish", str(EXAMPLE), "--data-dir", d, env=env)
    assert pub.returncode == 0, pub.stderr
    first, _, rest = pub.stdout.partition("\n")
    assert first.startswith(f"published {n} service(s) for {node_id}: changed, directory version")
    answer = json.loads(rest)
    assert answer["node_id"] == node_id and answer["services"] == n and answer["changed"] is True
    again = node_cli("services", "publish", str(EXAMPLE), "--data-dir", d, env=env)
    assert again.returncode == 0 and "unchanged" in again.stdout
    assert json.loads(again.stdout.partition("\n")[2])["changed"] is False

    shown = json.loads(node_cli("services", "show", "--data-dir", d, env=env).stdout)
    assert sorted(s["name"] for s in shown["services"]) == names

    # In the hub-signed directory: as verified by this node (its local API) ...
    key = node_cli("api-key", "create", "--data-dir", d, "--name", "tests",
                   env=env).stdout.strip().splitlines()[-1]
    port = free_port()
    spawn_service([sys.executable, "-c", "from node.cli import main; main()", "serve",
                   "--data-dir", d, "--port", str(port)], name="casa", env=env,
                  health_url=f"http://127.0.0.1:{port}/healthz")
    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/directory",
                  headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert r.status_code == 200, r.text
    me = next(i for i in r.json()["items"] if i["node_id"] == node_id)
    assert sorted(s["name"] for s in me["services"]) == names
    assert me["services"][0]["status"] == "active"
    # ... and by another member.
    other = make_node("legal-gt")
    entry = other.refresh_directory(force=True).entry(node_id)
    assert sorted(s["name"] for s in entry.services) == names


def test_publish_errors_are_clear(hub: RealHub, tmp_path: Path):
    node_id = unique_id("casa-gt")
    d = str(tmp_path / node_id)
    env = base_env({"RSSN_NODE_PASSPHRASE": NODE_PASS})
    assert node_cli("init", "--data-dir", d, "--hub", hub.url, "--node-id", node_id, "--token",
                    hub.invite(node_id, "Casa", "GT"), env=env).returncode == 0

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"organization": {"id": "not-a-uuid", "name": "Secret Name"},
                               "services": [{"name": "s"}]}))
    r = node_cli("services", "publish", str(bad), "--data-dir", d, env=env)
    assert r.returncode == 2
    assert "error: the hub refused the services file (validation_error)" in r.stderr
    assert "$.organization.id: must be a UUID" in r.stderr
    assert "not-a-uuid" not in r.stderr and "Traceback" not in r.stderr

    broken = tmp_path / "broken.json"
    broken.write_text('{"organization": ')
    r = node_cli("services", "publish", str(broken), "--data-dir", d, env=env)
    assert r.returncode == 2 and "is not valid JSON (line 1" in r.stderr

    r = node_cli("services", "publish", str(tmp_path / "missing.json"), "--data-dir", d, env=env)
    assert r.returncode == 1 and "error: cannot read" in r.stderr

    r = node_cli("services", "show", "--data-dir", d,
                 env={**env, "RSSN_NODE_PASSPHRASE": "not it"})
    assert r.returncode == 1 and "wrong passphrase" in r.stderr

    r = node_cli("services", "show", "--data-dir", str(tmp_path / "nowhere"), env=env)
    assert r.returncode == 1 and "no enrolled node" in r.stderr

    hub.cli("revoke", "--node-id", node_id)
    r = node_cli("services", "publish", str(EXAMPLE), "--data-dir", d, env=env)
    assert r.returncode == 1, r.stdout
    assert "the hub refused this node's credentials" in r.stderr
    assert "Traceback" not in r.stderr
