#!/usr/bin/env bash
# The test command: installs what is missing (scripts/setup.sh), checks
# formatting and vet, then runs the Go tests with the Firestore and Pub/Sub
# emulators started on free loopback ports (by scripts/emulators, which
# always stops them).
#
#   scripts/test.sh                 # everything
#   scripts/test.sh ./shared/...    # chosen packages (arguments go to `go test`)
#   scripts/test.sh -run TestX ./functions/notify/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [[ -n "$unformatted" ]]; then
  echo "gofmt needed on:" >&2; echo "$unformatted" >&2; exit 1
fi

args=("$@")
pkgs=()
for a in "$@"; do [[ $a == ./* || $a == github.com/* ]] && pkgs+=("$a"); done
# Flags such as -run or -v may come with packages; with no packages, test everything.
((${#pkgs[@]})) || { pkgs=(./...); args+=(./...); }
go vet "${pkgs[@]}"

exec go run ./scripts/emulators go test -count=1 -timeout "${TEST_TIMEOUT:-20m}" "${args[@]}"
