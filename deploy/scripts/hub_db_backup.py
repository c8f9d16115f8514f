#!/usr/bin/env python3
"""Back up and restore the hub's database (installed as /usr/local/sbin/rssn-hub-db-backup).

A thin wrapper: the logic is hub/backup.py, which `rssn-hub backup` and `rssn-hub restore`
use too, so the timer's dumps and the command's are the same files. hub/backup.py needs only
the Python standard library (and pg_dump/pg_restore for PostgreSQL): on a database or backup
host without rssn, copy that one file there and run ``python3 backup.py ...`` instead.

    hub_db_backup.py backup  --out-dir /var/backups/rssn-hub [--keep-days 30]
    hub_db_backup.py restore --from /var/backups/rssn-hub/rssn-hub-....pgdump --yes
    hub_db_backup.py verify  --from FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from hub.backup import main
except ImportError:  # run from a source checkout without rssn installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from hub.backup import main

if __name__ == "__main__":
    sys.exit(main())
