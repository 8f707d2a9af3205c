#!/usr/bin/env bash
# dbops: installs the npm packages when node_modules is missing or older than package-lock.json,
# so `npm start` and `npm test` work on a fresh clone and after a pull that changed the lock file.
#
# npm writes node_modules/.package-lock.json at every install: when it is newer than
# package-lock.json, the installed tree matches the lock file and this script does nothing and
# prints nothing.  Otherwise it runs `npm ci` (exactly the locked versions) and says so.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"

installed=node_modules/.package-lock.json
if [ -f "$installed" ] && [ "$installed" -nt package-lock.json ]; then
  exit 0
fi

if [ -f "$installed" ]; then
  echo "[packages] package-lock.json changed since the last install: npm ci ..."
else
  echo "[packages] node_modules is missing: npm ci ..."
fi
log=$(mktemp)
if ! npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
  echo "[packages] npm ci failed:" >&2
  tail -n 25 "$log" | sed 's/^/[packages]   | /' >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
echo "[packages] installed in ${SECONDS}s"
