"""The container entry point (deploy/docker-entrypoint.sh), run for real under /bin/sh with
stand-in `rssn-hub` / `rssn-node` programs that record how they were called.

Why stand-ins: the script's job is to choose the role, read *_FILE secrets, enroll once and
hand over to the real CLI with the right arguments; the CLIs themselves are tested elsewhere.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, explain, run

ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"

STUB = """#!/bin/sh
# Records argv and the secret-bearing environment, one JSON object per call.
python3 - "$0" "$@" <<'PY'
import json, os, sys
keys = ["RSSN_HUB_PASSPHRASE", "RSSN_HUB_DB", "RSSN_NODE_PASSPHRASE", "RSSN_NODE_DB",
        "RSSN_NODE_TOKEN", "RSSN_HUB_PASSPHRASE_FILE", "RSSN_NODE_TOKEN_FILE"]
record = {"prog": os.path.basename(sys.argv[1]), "args": sys.argv[2:],
          "env": {k: os.environ[k] for k in keys if k in os.environ}}
with open(os.environ["STUB_LOG"], "a") as fh:
    fh.write(json.dumps(record) + "\\n")
if record["prog"] == "rssn-node" and sys.argv[2:3] == ["init"]:
    data = sys.argv[sys.argv.index("--data-dir") + 1]
    open(os.path.join(data, "node.json"), "w").write("{}")
PY
"""


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for prog in ("rssn-hub", "rssn-node"):
            stub = self.bin / prog
            stub.write_text(STUB)
            stub.chmod(0o755)
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.log = tmp_path / "calls.jsonl"
        self.tmp = tmp_path

    def run(self, *args: str, **env: str):  # type: ignore[no-untyped-def]
        base = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "STUB_LOG": str(self.log),
            "RSSN_DATA_DIR": str(self.data),
        }
        return run(["/bin/sh", str(ENTRYPOINT), *args], env={**base, **env})

    def calls(self) -> list[dict]:  # type: ignore[type-arg]
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_hub_serve_is_the_default(env: Env) -> None:
    result = env.run(RSSN_ROLE="hub")
    assert result.returncode == 0, explain(result)
    [call] = env.calls()
    assert call["prog"] == "rssn-hub"
    assert call["args"] == ["serve", "--data-dir", str(env.data), "--host", "0.0.0.0",
                            "--port", "8000"]


def test_role_argument_overrides_env_and_extra_serve_args_pass_through(env: Env) -> None:
    (env.data / "node.json").write_text("{}")  # already enrolled
    result = env.run("node", "serve", "--log-level", "debug", RSSN_ROLE="hub", RSSN_PORT="9100")
    assert result.returncode == 0, explain(result)
    [call] = env.calls()
    assert call["prog"] == "rssn-node"
    assert call["args"] == ["serve", "--data-dir", str(env.data), "--host", "0.0.0.0",
                            "--port", "9100", "--log-level", "debug"]


def test_node_without_enrollment_or_token_refuses_to_start(env: Env) -> None:
    result = env.run(RSSN_ROLE="node")
    assert result.returncode == 64
    assert "not enrolled" in result.stderr
    assert env.calls() == []


def test_unknown_role_is_refused(env: Env) -> None:
    result = env.run(RSSN_ROLE="router")
    assert result.returncode == 64
    assert "RSSN_ROLE" in result.stderr


def test_secrets_from_files(env: Env) -> None:
    secret = env.tmp / "hub_passphrase"
    secret.write_text("correct horse battery staple\n")
    db = env.tmp / "hub_db"
    db.write_text("postgresql+psycopg://rssn:p%40ss@postgres/rssn_hub\n")
    result = env.run(
        "nodes", RSSN_ROLE="hub", RSSN_HUB_PASSPHRASE_FILE=str(secret), RSSN_HUB_DB_FILE=str(db)
    )
    assert result.returncode == 0, explain(result)
    [call] = env.calls()
    assert call["args"] == ["nodes", "--data-dir", str(env.data)]
    assert call["env"]["RSSN_HUB_PASSPHRASE"] == "correct horse battery staple"
    assert call["env"]["RSSN_HUB_DB"] == "postgresql+psycopg://rssn:p%40ss@postgres/rssn_hub"
    assert "RSSN_HUB_PASSPHRASE_FILE" not in call["env"]


def test_value_and_file_together_is_a_mistake(env: Env) -> None:
    secret = env.tmp / "p"
    secret.write_text("x\n")
    result = env.run(RSSN_ROLE="hub", RSSN_HUB_PASSPHRASE="y", RSSN_HUB_PASSPHRASE_FILE=str(secret))
    assert result.returncode == 64
    assert "keep one" in result.stderr
    assert env.calls() == []


def test_unreadable_secret_file_is_reported(env: Env) -> None:
    result = env.run(RSSN_ROLE="hub", RSSN_HUB_PASSPHRASE_FILE=str(env.tmp / "missing"))
    assert result.returncode == 64
    assert "not readable" in result.stderr


def test_explicit_data_dir_is_not_doubled(env: Env) -> None:
    result = env.run("invite", "--data-dir", "/elsewhere", "--node-id", "n1", RSSN_ROLE="hub")
    assert result.returncode == 0, explain(result)
    [call] = env.calls()
    assert call["args"] == ["invite", "--data-dir", "/elsewhere", "--node-id", "n1"]


def test_nested_subcommand_gets_data_dir_at_the_end(env: Env) -> None:
    result = env.run("api-key", "create", "--name", "primero", RSSN_ROLE="node")
    assert result.returncode == 0, explain(result)
    [call] = env.calls()
    assert call["args"] == ["api-key", "create", "--name", "primero", "--data-dir", str(env.data)]


def test_commands_without_a_data_directory_get_none(env: Env) -> None:
    result = env.run("adapters", RSSN_ROLE="node")
    assert result.returncode == 0, explain(result)
    [call] = env.calls()
    assert call["args"] == ["adapters"]


def test_hub_auto_init_runs_init_before_serve(env: Env) -> None:
    result = env.run(RSSN_ROLE="hub", RSSN_HUB_AUTO_INIT="1")
    assert result.returncode == 0, explain(result)
    assert [c["args"][0] for c in env.calls()] == ["init", "serve"]


def test_node_enrolls_once_with_token_file_then_serves(env: Env) -> None:
    token = env.tmp / "node-a.token"
    token.write_text("tok_secret_value\n")
    node_env = {
        "RSSN_ROLE": "node",
        "RSSN_NODE_ID": "node-a",
        "RSSN_HUB_URL": "http://hub:8000",
        "RSSN_NODE_TOKEN_FILE": str(token),
    }
    first = env.run(**node_env)
    assert first.returncode == 0, explain(first)
    init, serve = env.calls()
    assert init["args"] == ["init", "--data-dir", str(env.data), "--hub", "http://hub:8000",
                            "--node-id", "node-a", "--token", "tok_secret_value"]
    assert serve["args"][:1] == ["serve"] and "--port" in serve["args"]
    assert serve["args"][serve["args"].index("--port") + 1] == "8100"
    # The token never appears in the log line the script prints.
    assert "tok_secret_value" not in first.stderr + first.stdout
    # Second start: already enrolled, straight to serve.
    second = env.run(**node_env)
    assert second.returncode == 0, explain(second)
    assert [c["args"][0] for c in env.calls()] == ["init", "serve", "serve"]


def test_node_enroll_needs_id_and_hub(env: Env) -> None:
    result = env.run(RSSN_ROLE="node", RSSN_NODE_TOKEN="t")
    assert result.returncode == 64
    assert "RSSN_NODE_ID" in result.stderr


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_probes_the_role_port(env: Env, health_server: http.server.HTTPServer) -> None:
    port = str(health_server.server_address[1])
    ok = env.run("healthcheck", RSSN_ROLE="hub", RSSN_PORT=port)
    assert ok.returncode == 0, explain(ok)
    _Health.status = 503
    try:
        bad = env.run("healthcheck", RSSN_ROLE="hub", RSSN_PORT=port)
    finally:
        _Health.status = 200
    assert bad.returncode == 1
    closed = env.run("healthcheck", RSSN_ROLE="node", RSSN_PORT="1")
    assert closed.returncode == 1
    assert env.calls() == []
