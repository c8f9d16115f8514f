#!/bin/sh
# rssn container entry point: one image recipe, two roles (hub, node).
#
# Why a script and not ENTRYPOINT ["rssn-hub"]: the same file serves both images, reads
# secrets from files (the Docker/Kubernetes "*_FILE" convention, so passphrases never sit
# in `docker inspect` output), enrolls a node once on first start when it was handed a
# token, and gives HEALTHCHECK a probe that needs no curl in the image.
#
# Usage (the role comes from RSSN_ROLE, set by the image target, or a leading "hub"/"node"):
#   rssn-entrypoint                    serve (the default CMD)
#   rssn-entrypoint serve [ARGS]       serve on 0.0.0.0:$RSSN_PORT with --data-dir $RSSN_DATA_DIR
#   rssn-entrypoint healthcheck        GET http://127.0.0.1:$RSSN_PORT/healthz, exit 0 if 200
#   rssn-entrypoint SUBCOMMAND [ARGS]  rssn-<role> SUBCOMMAND ARGS --data-dir $RSSN_DATA_DIR
#   rssn-entrypoint hub|node ...       the same, for the named role
#   rssn-entrypoint sh|bash|python ... run that program (debugging)
#
# Environment:
#   RSSN_ROLE          hub | node
#   RSSN_DATA_DIR      default /data
#   RSSN_PORT          default 8000 (hub) / 8100 (node)
#   RSSN_HOST          default 0.0.0.0
#   RSSN_HUB_AUTO_INIT=1   hub: run `rssn-hub init` (idempotent: migrations, and the hub key
#                          only if the database has none) before serving
#   RSSN_NODE_ID, RSSN_HUB_URL, RSSN_NODE_TOKEN: node: enroll on first start (no node.json yet)
#   X_FILE for X in RSSN_HUB_PASSPHRASE RSSN_HUB_DB RSSN_NODE_PASSPHRASE RSSN_NODE_DB
#     RSSN_NODE_TOKEN RSSN_CONSOLE_PASSWORD RSSN_CONSOLE_OIDC_CLIENT_SECRET: read the value
#     from that file instead
set -eu

die() {
    echo "rssn-entrypoint: $*" >&2
    exit 64
}

case "${1:-}" in
    hub | node)
        RSSN_ROLE=$1
        shift
        ;;
esac
role=${RSSN_ROLE:-}
case "$role" in
    hub | node) ;;
    *) die "set RSSN_ROLE to hub or node (or pass it as the first argument)" ;;
esac

data_dir=${RSSN_DATA_DIR:-/data}
host=${RSSN_HOST:-0.0.0.0}
if [ "$role" = hub ]; then
    port=${RSSN_PORT:-8000}
else
    port=${RSSN_PORT:-8100}
fi

# Secrets from files: X_FILE=/run/secrets/x sets X to the file's content (trailing newline
# removed). Setting both X and X_FILE is a configuration mistake worth stopping for.
for var in RSSN_HUB_PASSPHRASE RSSN_HUB_DB RSSN_NODE_PASSPHRASE RSSN_NODE_DB RSSN_NODE_TOKEN \
    RSSN_CONSOLE_PASSWORD RSSN_CONSOLE_OIDC_CLIENT_SECRET; do
    eval "file=\${${var}_FILE:-}"
    [ -n "$file" ] || continue
    eval "current=\${${var}:-}"
    [ -z "$current" ] || die "both $var and ${var}_FILE are set; keep one"
    [ -r "$file" ] || die "${var}_FILE=$file is not readable"
    value=$(cat "$file")
    export "$var=$value"
    unset "${var}_FILE"
done

# Print a command without its secret arguments, then run it.
run_quiet_token() {
    echo "rssn-entrypoint: $1" >&2
    shift
    "$@"
}

healthcheck() {
    exec python3 - "$port" <<'PY'
import sys
import urllib.request

url = f"http://127.0.0.1:{sys.argv[1]}/healthz"
try:
    with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 (fixed local URL)
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # any failure means unhealthy
    print(f"unhealthy: {type(exc).__name__}", file=sys.stderr)
    sys.exit(1)
PY
}

prepare_hub() {
    if [ "${RSSN_HUB_AUTO_INIT:-0}" = 1 ]; then
        run_quiet_token "rssn-hub init --data-dir $data_dir (RSSN_HUB_AUTO_INIT=1)" \
            rssn-hub init --data-dir "$data_dir"
    fi
}

prepare_node() {
    [ ! -e "$data_dir/node.json" ] || return 0
    if [ -z "${RSSN_NODE_TOKEN:-}" ]; then
        die "this node is not enrolled yet ($data_dir/node.json is missing). Set RSSN_NODE_ID," \
            "RSSN_HUB_URL and RSSN_NODE_TOKEN (or RSSN_NODE_TOKEN_FILE), or run" \
            "'rssn-entrypoint init --hub URL --node-id ID --token TOKEN' once."
    fi
    [ -n "${RSSN_NODE_ID:-}" ] || die "RSSN_NODE_ID is required to enroll"
    [ -n "${RSSN_HUB_URL:-}" ] || die "RSSN_HUB_URL is required to enroll"
    run_quiet_token "rssn-node init --data-dir $data_dir --hub $RSSN_HUB_URL --node-id $RSSN_NODE_ID --token <hidden>" \
        rssn-node init --data-dir "$data_dir" --hub "$RSSN_HUB_URL" \
        --node-id "$RSSN_NODE_ID" --token "$RSSN_NODE_TOKEN"
}

cmd=${1:-serve}
[ $# -eq 0 ] || shift

case "$cmd" in
    healthcheck)
        healthcheck
        ;;
    serve)
        "prepare_$role"
        exec "rssn-$role" serve --data-dir "$data_dir" --host "$host" --port "$port" "$@"
        ;;
    sh | bash | python | python3)
        exec "$cmd" "$@"
        ;;
    -h | --help | --version | adapters | adapt)
        # Commands without a data directory (adapters/adapt convert files only).
        exec "rssn-$role" "$cmd" "$@"
        ;;
    *)
        # Every rssn-hub / rssn-node subcommand takes --data-dir; add it unless given.
        for arg in "$@"; do
            case "$arg" in
                --data-dir | --data-dir=* | -h | --help) exec "rssn-$role" "$cmd" "$@" ;;
            esac
        done
        exec "rssn-$role" "$cmd" "$@" --data-dir "$data_dir"
        ;;
esac
