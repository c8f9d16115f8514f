#!/bin/sh
# Create the secrets the compose demo (deploy/compose.yaml) reads, once, in deploy/secrets/.
#
# Random values from /dev/urandom; existing files are kept, so running it again is harmless.
# The directory is 0700 and owned by you: other users of this machine cannot read it. The
# files themselves are 0644 because Docker Compose bind-mounts them into containers that
# run as uid 10001 (not you); the 0700 directory is what keeps them private.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
dir="$here/secrets"
mkdir -p "$dir"
chmod 0700 "$dir"

random_hex() {
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
}

write_once() {
    if [ -s "$dir/$1" ]; then
        echo "kept    secrets/$1"
        return 0
    fi
    printf '%s\n' "$2" >"$dir/$1.tmp"
    chmod 0644 "$dir/$1.tmp"
    mv "$dir/$1.tmp" "$dir/$1"
    echo "created secrets/$1"
}

write_once pg_password "$(random_hex)"
pg_password=$(cat "$dir/pg_password")
write_once hub_db_url "postgresql+psycopg://rssn:${pg_password}@postgres:5432/rssn_hub"
write_once hub_passphrase "$(random_hex)"
write_once node_a_passphrase "$(random_hex)"
write_once node_b_passphrase "$(random_hex)"
echo "Keep a copy of hub_passphrase and the node passphrases: without them the sealed keys" \
    "in the volumes cannot be opened."
