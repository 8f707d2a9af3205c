#!/usr/bin/env bash
# Every test makes its own fixtures: each test file must pass alone, and all of them must pass
# in reverse order in one run (a file that leans on what an earlier file left behind fails one of
# the two). With --tests-reversed, each file runs alone with the tests inside every suite in
# reverse order instead (a test leaning on an earlier test of its file fails then).
#
#   npm run test:isolation                       every test file, alone then all reversed
#   npm run test:isolation -- FILE...            those files only
#   npm run test:isolation -- --tests-reversed FILE...
set -uo pipefail
cd "$(dirname "$0")/.."

mode=files
if [ "${1:-}" = --tests-reversed ]; then
  mode=tests
  shift
fi
if [ $# -gt 0 ]; then
  files=("$@")
else
  # The files `npm test` runs (its glob skips dot files).
  mapfile -t files < <(find test -name '*.test.ts' -not -name '.*' | sort)
fi

failed=()
started=$SECONDS
run() {
  local what=$1
  shift
  local at=$SECONDS
  echo "== $what"
  if npx mocha "$@"; then
    echo "== passed in $((SECONDS - at)) s: $what"
  else
    echo "== FAILED after $((SECONDS - at)) s: $what"
    failed+=("$what")
  fi
}

if [ "$mode" = tests ]; then
  for file in "${files[@]}"; do
    run "$file alone, its tests in reverse order" --require tsx/cjs --require test/helpers/reverse-order.ts "$file"
  done
else
  for file in "${files[@]}"; do
    run "$file alone" "$file"
  done
  reversed=()
  for ((i = ${#files[@]} - 1; i >= 0; i--)); do reversed+=("${files[i]}"); done
  run "all ${#files[@]} files in reverse order" "${reversed[@]}"
fi

echo "isolation: ${#files[@]} files, $((SECONDS - started)) s, ${#failed[@]} failed"
for what in "${failed[@]}"; do echo "  FAILED: $what"; done
[ ${#failed[@]} -eq 0 ]
