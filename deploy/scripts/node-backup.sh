#!/bin/sh
# Dated node backup with retention, for deploy/systemd/rssn-node-backup.timer or cron.
#
#   node-backup.sh [DATA_DIR] [OUT_DIR] [KEEP_DAYS]
#   defaults:      /var/lib/rssn-node /var/backups/rssn-node 30
#
# `rssn-node backup` takes a consistent online copy of the node database and the sealed key
# file (the keys stay encrypted with the node passphrase, which is not in the backup).
# Copy OUT_DIR off the machine (another disk, the organisation's backup system): a backup
# on the same disk does not survive the disk.
set -eu

data_dir=${1:-/var/lib/rssn-node}
out_dir=${2:-/var/backups/rssn-node}
keep_days=${3:-30}
rssn_node=${RSSN_NODE_BIN:-rssn-node}

umask 077
mkdir -p "$out_dir"
chmod 0700 "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$out_dir/rssn-node-$stamp.backup"

"$rssn_node" backup --data-dir "$data_dir" --out "$out.partial"
mv "$out.partial" "$out"
(cd "$out_dir" && sha256sum "rssn-node-$stamp.backup" >"rssn-node-$stamp.backup.sha256")
echo "node-backup: wrote $out"

# Retention: only after a good backup, and only this script's own files.
find "$out_dir" -maxdepth 1 -type f -name 'rssn-node-*.backup*' -mtime +"$keep_days" \
    -exec rm -f {} +
