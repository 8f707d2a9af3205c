#!/usr/bin/env bash
# dbops: installs the npm packages when node_modules is missing or older than package-lock.json,
# so `npm start` and `npm test` work on a fresh clone and after a pull that changed the lock file.
#
# npm writes node_modules/.package-lock.json at every install: when it is newer than
# package-lock.json, the installed tree matches the lock file and this script does nothing and
# prints nothing.  Otherwise it installs the locked versions and says so: `npm install --no-save`,
# which leaves package.json and package-lock.json as they are (`npm ci` refuses this lock file: it
# lists only the linux-x64 binary of squawk-cli's optional per-platform packages).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"

installed=node_modules/.package-lock.json
if [ -f "$installed" ] && [ "$installed" -nt package-lock.json ]; then
  exit 0
fi

if [ -f "$installed" ]; then
  echo "[packages] package-lock.json changed since the last install: npm install ..."
else
  echo "[packages] node_modules is missing: npm install ..."
fi
log=$(mktemp)
if ! npm install --no-save --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
  echo "[packages] npm install failed:" >&2
  head -n 25 "$log" | sed 's/^/[packages]   | /' >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
echo "[packages] installed in ${SECONDS}s"
