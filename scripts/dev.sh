#!/usr/bin/env bash
# The local stack: Firestore and Pub/Sub emulators, the Google sandbox and all
# five functions on loopback ports, wired like the deployed system. It first
# installs what is missing (scripts/setup.sh).
#
#   scripts/dev.sh          # run until Ctrl-C; prints the consent URL
#   scripts/dev.sh --demo   # connect a user, deliver mail, print the events, exit
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec go run ./scripts/dev "$@"
