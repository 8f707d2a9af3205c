#!/usr/bin/env bash
# dbops: one-command, idempotent, cached set-up of the real local stack on Debian bookworm.
#
# Installs only what is missing (PostgreSQL + pgvector built from Debian's trixie source package,
# promtool, chromium, the Temporal CLI, the Temporal server with its SQL schema tool and PostgreSQL
# schemas, the Temporal Web UI server, the Temporal Java test server, a Python venv with moto and
# checkov), keeps everything it downloads or builds in version-keyed folders of the cache
# (${DBOPS_CACHE:-$HOME/.cache/dbops}) and links it into <repo>/.tools/.
# Every version is pinned in versions.env beside this file.  Warm runs touch no network.
#
# Environment:
#   DBOPS_CACHE          cache root (default: $HOME/.cache/dbops)
#   DBOPS_SETUP_VERBOSE  1 = stream each step's log to the terminal too (logs are always in <cache>/logs/)
#   DBOPS_PYTHON         interpreter for the venv (default: /usr/bin/python3, Debian's)
#
# Runs as root (apt-get, make install).  See README.md beside this file.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
# shellcheck source=versions.env
source "$SCRIPT_DIR/versions.env"

CACHE=${DBOPS_CACHE:-$HOME/.cache/dbops}
TOOLS="$REPO_ROOT/.tools"
LOG_DIR="$CACHE/logs"
PYTHON=${DBOPS_PYTHON:-/usr/bin/python3}
PG_BINDIR="/usr/lib/postgresql/$POSTGRES_MAJOR/bin"
PG_CONFIG="$PG_BINDIR/pg_config"
TRIXIE_SRC_LIST="/etc/apt/sources.list.d/dbops-$PGVECTOR_DEBIAN_SUITE-src.sources"
export DEBIAN_FRONTEND=noninteractive

# Go is not always on a non-login PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  PATH="$PATH:/usr/local/go/bin"
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "[setup] must run as root (apt-get install, make install)" >&2
  exit 1
fi

mkdir -p "$CACHE" "$LOG_DIR"

# One set-up at a time per cache (npm test and npm start may race).
exec 9>"$CACHE/.setup.lock"
if ! flock -n 9; then
  echo "[setup] another set-up is running on $CACHE; waiting for it"
  flock 9
fi

# ---------------------------------------------------------------- helpers

now_us() { local t=$EPOCHREALTIME; echo "${t/[.,]/}"; }
fmt_us() { local us=$1; printf '%d.%ds' $((us / 1000000)) $(((us / 100000) % 10)); }

# Status word that a step writes for the summary line ("ok" when it writes nothing).
STATUS_FILE="$CACHE/.setup.status"
status() { printf '%s' "$*" >"$STATUS_FILE"; }

T_TOTAL=$(now_us)

# run_step LABEL FUNCTION
# Runs FUNCTION in a subshell with errexit in force (set -e again inside: the caller's `set +e`
# and any `if` around it would otherwise switch it off for the whole function),
# logs its output to <cache>/logs/FUNCTION.log and prints one line with its status and time.
# A failing step prints the end of its log and stops the set-up (exit 1).
run_step() {
  local label=$1 fn=$2 log="$LOG_DIR/$2.log" t0 rc dots n
  t0=$(now_us)
  : >"$STATUS_FILE"
  n=$((32 - ${#label}))
  [ "$n" -ge 3 ] || n=3
  dots=$(printf '%*s' "$n" '' | tr ' ' '.')
  set +e
  if [ "${DBOPS_SETUP_VERBOSE:-0}" = 1 ]; then
    echo "[setup] $label ..."
    (set -e; "$fn") 2>&1 | tee "$log.new"
    rc=${PIPESTATUS[0]}
  else
    (set -e; "$fn") >"$log.new" 2>&1
    rc=$?
  fi
  set -e
  # Keep the log of the last run that did something (a warm run writes nothing).
  if [ "$rc" -ne 0 ] || [ -s "$log.new" ]; then mv -f "$log.new" "$log"; else rm -f "$log.new"; fi
  local st
  st=$(cat "$STATUS_FILE")
  if [ "$rc" -eq 0 ]; then
    printf '[setup] %s %s %s (%s)\n' "$label" "$dots" "${st:-ok}" "$(fmt_us $(($(now_us) - t0)))"
  else
    printf '[setup] %s %s FAILED (%s), log: %s\n' "$label" "$dots" "$(fmt_us $(($(now_us) - t0)))" "$log"
    tail -n 25 "$log" | sed 's/^/[setup]   | /'
    echo "[setup] aborted after $(fmt_us $(($(now_us) - T_TOTAL)))" >&2
    exit 1
  fi
}

# Prints the packages of "$@" that dpkg does not have installed.
missing_debs() {
  local installed
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null |
    awk '$2 == "installed" { print $1 }') || true
  local p
  for p in "$@"; do
    grep -qxF "$p" <<<"$installed" || echo "$p"
  done
}

apt_install() {
  # Do not let package scripts start services (prometheus, a default postgres cluster) while we
  # install; keep an existing policy-rc.d as it is.
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local rc=0
  apt-get install -y --no-install-recommends "$@" || rc=$?
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  return "$rc"
}

# The URI and keyring that the machine's own bookworm "deb" sources use (deb822 or one-line),
# printed as "URI<TAB>KEYRING" (KEYRING may be empty).
debian_mirror() {
  local f out
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    out=$(awk '
      function flush() {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && suites ~ /(^|[ \t])bookworm([ \t]|$)/ && uris != "") {
          split(uris, u, /[ \t]+/); if (signed !~ /^\//) signed = ""
          print u[1] "\t" signed; found = 1; exit
        }
        types = suites = uris = signed = ""
      }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]*#/ { next }
      tolower($1) == "types:"     { sub(/^[^:]*:[ \t]*/, ""); types = $0 }
      tolower($1) == "suites:"    { sub(/^[^:]*:[ \t]*/, ""); suites = $0 }
      tolower($1) == "uris:"      { sub(/^[^:]*:[ \t]*/, ""); uris = $0 }
      tolower($1) == "signed-by:" { sub(/^[^:]*:[ \t]*/, ""); signed = $0 }
      END { if (!found) flush() }
    ' "$f")
    if [ -n "$out" ]; then echo "$out"; return 0; fi
  done
  # one-line format: deb [options] URI bookworm main
  out=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                       if ($(i+1) == "bookworm") { print $i "\t"; exit } }')
  if [ -n "$out" ]; then echo "$out"; return 0; fi
  return 1
}

# ---------------------------------------------------------------- steps

DEBS=(
  "postgresql-$POSTGRES_MAJOR" "postgresql-server-dev-$POSTGRES_MAJOR"
  build-essential dpkg-dev
  prometheus chromium
  python3-venv procps
)
command -v java >/dev/null 2>&1 || DEBS+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || DEBS+=(maven)

step_debs() {
  local missing
  mapfile -t missing < <(missing_debs "${DEBS[@]}")
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "missing: ${missing[*]}"
    apt-get update
    apt_install "${missing[@]}"
    status "installed: ${missing[*]}"
  fi
  # We want promtool only: a prometheus server that our install brought must be neither left
  # running nor enabled at boot (policy-rc.d above kept it from starting).  A prometheus that
  # was already on the machine is left alone.
  if printf '%s\n' "${missing[@]}" | grep -qx prometheus; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now prometheus || true
    elif command -v update-rc.d >/dev/null 2>&1; then
      update-rc.d prometheus disable || true
    fi
    if pgrep -x prometheus >/dev/null 2>&1; then
      service prometheus stop || true
      sleep 1
      if pgrep -x prometheus >/dev/null 2>&1; then
        echo "a prometheus server is still running after the install; stop it" >&2
        return 1
      fi
    fi
  fi
  # Checks that later steps and the TS harness rely on.
  id -u postgres >/dev/null
  local f
  for f in "$PG_BINDIR/initdb" "$PG_BINDIR/pg_ctl" "$PG_CONFIG"; do
    [ -x "$f" ] || { echo "missing: $f" >&2; return 1; }
  done
  command -v promtool >/dev/null || { echo "missing: promtool" >&2; return 1; }
}

step_pgvector() {
  local want=${PGVECTOR_DEBIAN_VERSION%%-*} sharedir pkglibdir
  { read -r sharedir; read -r pkglibdir; } < <("$PG_CONFIG" --sharedir --pkglibdir)
  if grep -qE "^default_version = '$want'" "$sharedir/extension/vector.control" 2>/dev/null &&
    [ -f "$pkglibdir/vector.so" ]; then
    return 0
  fi

  local key="pgvector-$PGVECTOR_DEBIAN_VERSION"
  local src="$CACHE/$key-source" tree="$CACHE/$key-pg$POSTGRES_MAJOR-build"

  if [ ! -f "$tree/.dbops-built" ]; then
    # 1. Debian's source package files (.dsc, .orig.tar.gz, .debian.tar.xz), cached.
    if [ ! -f "$src/.dbops-complete" ]; then
      local mirror uri keyring
      mirror=$(debian_mirror) || { echo "no bookworm deb source found in /etc/apt" >&2; return 1; }
      uri=${mirror%%$'\t'*}
      keyring=${mirror#*$'\t'}
      [ -n "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
      local want_list
      want_list=$(printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
        "$uri" "$PGVECTOR_DEBIAN_SUITE" "$keyring")
      if [ "$(cat "$TRIXIE_SRC_LIST" 2>/dev/null)" != "$want_list" ]; then
        printf '# written by dbops infra/local/setup.sh: source packages only (no %s binaries)\n%s\n' \
          "$PGVECTOR_DEBIAN_SUITE" "$want_list" >"$TRIXIE_SRC_LIST"
      fi
      if ! apt-cache showsrc "$PGVECTOR_DEBIAN_SOURCE" 2>/dev/null |
        grep -qxF "Version: $PGVECTOR_DEBIAN_VERSION"; then
        apt-get update
      fi
      local dl
      rm -rf "$src".tmp.*
      dl=$(mktemp -d "$src.tmp.XXXXXX")
      chown _apt "$dl" 2>/dev/null || true # apt downloads as _apt (sandbox)
      (cd "$dl" && apt-get source --download-only "$PGVECTOR_DEBIAN_SOURCE=$PGVECTOR_DEBIAN_VERSION")
      chown -R root "$dl"
      chmod 755 "$dl"
      touch "$dl/.dbops-complete"
      rm -rf "$src"
      mv "$dl" "$src"
    fi
    # 2. Unpack (applies Debian's patches) and build against our PostgreSQL.
    local build
    rm -rf "$tree".tmp.*
    build=$(mktemp -d "$tree.tmp.XXXXXX")
    dpkg-source -x "$src/${PGVECTOR_DEBIAN_SOURCE}_${PGVECTOR_DEBIAN_VERSION}.dsc" "$build/src"
    make -C "$build/src" -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
    touch "$build/src/.dbops-built"
    chmod 755 "$build/src"
    rm -rf "$tree"
    mv "$build/src" "$tree"
    rm -rf "$build" # dpkg-source leaves the .orig tarball beside the tree
    status "built + installed"
  else
    status "installed from cached build"
  fi
  # 3. Install (the built tree stays in the cache: a reinstall is just this).
  make -C "$tree" install PG_CONFIG="$PG_CONFIG"
  grep -qE "^default_version = '$want'" "$sharedir/extension/vector.control"
  [ -f "$pkglibdir/vector.so" ]
}

# Waits while another `go install` of PACKAGE@VERSION runs (e.g. one started by hand into the cache).
wait_for_go_install() {
  while pgrep -f "go install .*$1@$2" >/dev/null 2>&1; do
    echo "waiting for a running go install of $1@$2"
    sleep 5
  done
}

temporal_cli_ok() {
  local v
  [ -x "$1" ] || return 1
  v=$("$1" --version 2>/dev/null) || return 1
  [[ $v == "temporal version ${TEMPORAL_CLI_VERSION#v} "* ]]
}

step_temporal_cli() {
  local dir="$CACHE/temporal-cli-$TEMPORAL_CLI_VERSION" pkg="github.com/temporalio/cli/cmd/temporal"
  local bin="$dir/temporal"
  wait_for_go_install "$pkg" "$TEMPORAL_CLI_VERSION"
  temporal_cli_ok "$bin" && return 0
  command -v go >/dev/null || { echo "go is needed to build the Temporal CLI" >&2; return 1; }
  local gobin
  rm -rf "$dir".tmp.*
  gobin=$(mktemp -d "$dir.tmp.XXXXXX")
  # As the release build does (.goreleaser.yml): static, stripped, version stamped.
  CGO_ENABLED=0 GOBIN="$gobin" GOFLAGS= go install -trimpath \
    -ldflags "-s -w -X github.com/temporalio/cli/temporalcli.Version=${TEMPORAL_CLI_VERSION#v}" \
    "$pkg@$TEMPORAL_CLI_VERSION"
  temporal_cli_ok "$gobin/temporal"
  mkdir -p "$dir"
  mv -f "$gobin/temporal" "$bin"
  rmdir "$gobin"
  "$bin" --version
  status "built"
}

# The directory of MODULE@VERSION in Go's module cache (offline once the module is there).
go_module_dir() {
  (cd / && GOFLAGS= go mod download -json "$1@$2") |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

temporal_server_dir() { echo "$CACHE/temporal-server-$TEMPORAL_SERVER_VERSION"; }

# The Temporal server and its SQL schema tool (bin/), with the PostgreSQL schemas of the same module
# (schema/postgresql/v12/{temporal,visibility}): what `npm run start:cluster` runs.
step_temporal_server() {
  local mod=go.temporal.io/server dir want=${TEMPORAL_SERVER_VERSION#v}
  dir=$(temporal_server_dir)
  wait_for_go_install "$mod/cmd/server" "$TEMPORAL_SERVER_VERSION"
  # The marker is written last, after the checks below: its presence means a complete folder.
  [ -f "$dir/.dbops-complete" ] && return 0
  command -v go >/dev/null || { echo "go is needed to build the Temporal server" >&2; return 1; }
  local tmp src
  rm -rf "$dir".tmp.*
  tmp=$(mktemp -d "$dir.tmp.XXXXXX")
  # Static and stripped, as the CLI; the server carries its version in its code.
  CGO_ENABLED=0 GOBIN="$tmp/gobin" GOFLAGS= go install -trimpath -ldflags "-s -w" \
    "$mod/cmd/server@$TEMPORAL_SERVER_VERSION" "$mod/cmd/tools/sql@$TEMPORAL_SERVER_VERSION"
  mkdir -p "$tmp/bin" "$tmp/schema/postgresql/v12"
  mv "$tmp/gobin/server" "$tmp/bin/temporal-server"
  mv "$tmp/gobin/sql" "$tmp/bin/temporal-sql-tool"
  rmdir "$tmp/gobin"
  [ "$("$tmp/bin/temporal-server" --version)" = "temporal version $want" ]
  [ "$("$tmp/bin/temporal-sql-tool" --version)" = "temporal-sql-tool version $want" ]
  # The schema tool embeds only MySQL's versioned schemas: PostgreSQL's come from the module.
  src=$(go_module_dir "$mod" "$TEMPORAL_SERVER_VERSION")
  local part
  for part in temporal visibility; do
    [ -d "$src/schema/postgresql/v12/$part/versioned" ] || {
      echo "missing in the module: schema/postgresql/v12/$part/versioned" >&2
      return 1
    }
    cp -R "$src/schema/postgresql/v12/$part" "$tmp/schema/postgresql/v12/$part"
  done
  chmod -R u+w "$tmp/schema" # the module cache is read-only
  touch "$tmp/.dbops-complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  status "built"
}

temporal_ui_dir() { echo "$CACHE/temporal-ui-server-$TEMPORAL_UI_SERVER_VERSION"; }

# The Temporal Web UI server (its assets are embedded) for the cluster `npm run start:cluster` runs.
step_temporal_ui() {
  local mod=github.com/temporalio/ui-server/v2 dir
  dir=$(temporal_ui_dir)
  wait_for_go_install "$mod/cmd/server" "$TEMPORAL_UI_SERVER_VERSION"
  [ -f "$dir/.dbops-complete" ] && return 0
  command -v go >/dev/null || { echo "go is needed to build the Temporal Web UI server" >&2; return 1; }
  local tmp
  rm -rf "$dir".tmp.*
  tmp=$(mktemp -d "$dir.tmp.XXXXXX")
  CGO_ENABLED=0 GOBIN="$tmp/gobin" GOFLAGS= go install -trimpath -ldflags "-s -w" \
    "$mod/cmd/server@$TEMPORAL_UI_SERVER_VERSION"
  mv "$tmp/gobin/server" "$tmp/temporal-ui-server"
  rmdir "$tmp/gobin"
  [ "$("$tmp/temporal-ui-server" --version)" = "Temporal UI version ${TEMPORAL_UI_SERVER_VERSION#v}" ]
  touch "$tmp/.dbops-complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  status "built"
}

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

step_test_server() {
  local dir="$CACHE/temporal-test-server-$TEMPORAL_TEST_SERVER_VERSION"
  [ -f "$dir/.dbops-complete" ] && [ -x "$dir/bin/temporal-test-server" ] && return 0
  local tmp
  rm -rf "$dir".tmp.*
  tmp=$(mktemp -d "$dir.tmp.XXXXXX")
  mvn -B -q -Dstyle.color=never -f "$SCRIPT_DIR/test-server-pom.xml" \
    -Dtemporal.test.server.version="$TEMPORAL_TEST_SERVER_VERSION" \
    -Dmaven.dependency.plugin.version="$MAVEN_DEPENDENCY_PLUGIN_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$tmp/jars"
  [ -f "$tmp/jars/temporal-test-server-$TEMPORAL_TEST_SERVER_VERSION.jar" ]
  mkdir -p "$tmp/bin"
  cat >"$tmp/bin/temporal-test-server" <<'EOF'
#!/bin/sh
# Temporal Java time-skipping test server (generated by dbops infra/local/setup.sh).
# Usage: temporal-test-server <port> [extra args]   (as the Temporal TypeScript SDK calls it)
here=$(dirname "$(readlink -f "$0")")
exec java -cp "$here/../jars/*" io.temporal.testserver.TestServer "$@"
EOF
  chmod 755 "$tmp/bin/temporal-test-server"

  # Verify that it really serves: start on a free port, wait for TCP, stop it.
  local port pid ok=0 i
  port=$(free_port)
  "$tmp/bin/temporal-test-server" "$port" &
  pid=$!
  for i in $(seq 1 120); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "$ok" = 1 ] || { echo "test server did not accept connections on port $port" >&2; return 1; }
  echo "test server answered on port $port after ~$((i / 2))s"

  touch "$tmp/.dbops-complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  status "fetched + verified ($(ls "$dir/jars" | wc -l) jars)"
}

venv_dir() {
  local key
  key=$(printf 'moto[server]==%s\ncheckov==%s\npython=%s\n' "$MOTO_VERSION" "$CHECKOV_VERSION" \
    "$(readlink -f "$PYTHON") $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')" |
    sha256sum | cut -c1-16)
  echo "$CACHE/venv-$key"
}

step_venv() {
  local dir
  dir=$(venv_dir)
  [ -f "$dir/.dbops-complete" ] && return 0
  # A venv is not relocatable: build it in place; the marker file is written last.
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install --disable-pip-version-check --progress-bar off \
    "moto[server]==$MOTO_VERSION" "checkov==$CHECKOV_VERSION"
  "$dir/bin/pip" check || echo "warning: pip check reported conflicts (see above)"
  "$dir/bin/moto_server" --help >/dev/null
  "$dir/bin/checkov" --version
  printf 'moto[server]==%s\ncheckov==%s\n' "$MOTO_VERSION" "$CHECKOV_VERSION" >"$dir/dbops-pins.txt"
  touch "$dir/.dbops-complete"
  status "installed"
}

link() { # link TARGET LINKNAME: (re)point only when it differs
  [ "$(readlink "$2" 2>/dev/null)" = "$1" ] && return 0
  ln -sfn "$1" "$2"
  echo "linked $2 -> $1"
}

step_links() {
  mkdir -p "$TOOLS/bin"
  link "$CACHE/temporal-cli-$TEMPORAL_CLI_VERSION/temporal" "$TOOLS/bin/temporal"
  link "$CACHE/temporal-test-server-$TEMPORAL_TEST_SERVER_VERSION/bin/temporal-test-server" \
    "$TOOLS/bin/temporal-test-server"
  link "$(venv_dir)" "$TOOLS/venv"
  link "$(command -v promtool)" "$TOOLS/bin/promtool"
  link "$(temporal_server_dir)/bin/temporal-server" "$TOOLS/bin/temporal-server"
  link "$(temporal_server_dir)/bin/temporal-sql-tool" "$TOOLS/bin/temporal-sql-tool"
  link "$(temporal_server_dir)/schema/postgresql/v12" "$TOOLS/temporal-schema"
  link "$(temporal_ui_dir)/temporal-ui-server" "$TOOLS/bin/temporal-ui-server"
  local l
  for l in "$TOOLS/bin/temporal" "$TOOLS/bin/temporal-test-server" "$TOOLS/bin/promtool" \
    "$TOOLS/venv/bin/moto_server" "$TOOLS/venv/bin/checkov" "$TOOLS/bin/temporal-server" \
    "$TOOLS/bin/temporal-sql-tool" "$TOOLS/bin/temporal-ui-server"; do
    [ -x "$l" ] || { echo "broken: $l" >&2; return 1; }
  done
  [ -d "$TOOLS/temporal-schema/temporal/versioned" ] || { echo "broken: $TOOLS/temporal-schema" >&2; return 1; }
}

# ---------------------------------------------------------------- main

echo "[setup] cache: $CACHE"
run_step "debian packages" step_debs
run_step "pgvector ${PGVECTOR_DEBIAN_VERSION%%-*} (pg $POSTGRES_MAJOR)" step_pgvector
run_step "temporal cli $TEMPORAL_CLI_VERSION" step_temporal_cli
run_step "temporal server $TEMPORAL_SERVER_VERSION" step_temporal_server
run_step "temporal web ui $TEMPORAL_UI_SERVER_VERSION" step_temporal_ui
run_step "temporal test server $TEMPORAL_TEST_SERVER_VERSION" step_test_server
run_step "python venv (moto, checkov)" step_venv
run_step ".tools links" step_links
echo "[setup] total $(fmt_us $(($(now_us) - T_TOTAL)))"
