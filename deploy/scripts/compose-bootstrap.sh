#!/bin/sh
# One-shot bootstrap of the compose demo network (deploy/compose.yaml, service hub-bootstrap).
#
# 1. `rssn-hub init`: runs the database migrations and creates the hub key if the database
#    has none (idempotent: a second run changes nothing and prints the same fingerprint).
# 2. For each node id given as an argument, unless /enroll/<id>.token already exists:
#    `rssn-hub invite` and keep the one-time token (the last line of its output) in
#    /enroll/<id>.token (mode 0600) for that node's first start.
# Runs inside the hub image, as uid 10001, through rssn-entrypoint (which reads *_FILE secrets).
set -eu

country=${RSSN_DEMO_COUNTRY:-KE}
enroll_dir=${RSSN_ENROLL_DIR:-/enroll}
entrypoint=${RSSN_ENTRYPOINT:-/usr/local/bin/rssn-entrypoint}

"$entrypoint" init

umask 077
for node_id in "$@"; do
    token_file="$enroll_dir/$node_id.token"
    if [ -s "$token_file" ]; then
        echo "compose-bootstrap: $node_id already has an enrollment token; not inviting again"
        continue
    fi
    output=$("$entrypoint" invite --node-id "$node_id" --org "Demo organisation $node_id" \
        --country "$country")
    token=$(printf '%s\n' "$output" | tail -n 1)
    [ -n "$token" ] || { echo "compose-bootstrap: no token for $node_id" >&2; exit 1; }
    printf '%s\n' "$token" >"$token_file.tmp"
    mv "$token_file.tmp" "$token_file"
    echo "compose-bootstrap: invited $node_id (token in $token_file)"
done
