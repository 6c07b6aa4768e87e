#!/usr/bin/env bash
# Set-up: installs what the tests, the local stack and CI need and this
# machine lacks, so a newcomer's `scripts/test.sh` covers what CI covers:
# Google's Firestore and Pub/Sub emulators and Java 17 (the test stack),
# chromium (the browser test of the consent flow), Node.js and npm with the
# pinned standardwebhooks package (the independent signature check),
# strace, unshare and ip (the isolated cold-start benchmark and the offline
# Terraform checks), and the Go modules. What it cannot install it names in
# one line, with why; the tests that need it then skip with how to run them
# (or fail, under CI=true).
#
# scripts/test.sh, scripts/dev.sh and .ci/run call it first; when everything
# is there it only checks, and it runs once per command tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
[[ -n "${GMAILWATCH_SETUP_DONE:-}" ]] && exit 0
export GMAILWATCH_SETUP_DONE=1

sdk=/usr/lib/google-cloud-sdk/platform
need=()
command -v gcloud >/dev/null || need+=(google-cloud-cli)
[[ -d $sdk/cloud-firestore-emulator ]] || need+=(google-cloud-cli-firestore-emulator)
[[ -d $sdk/pubsub-emulator ]] || need+=(google-cloud-cli-pubsub-emulator)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v curl >/dev/null || need+=(curl)
command -v strace >/dev/null || need+=(strace)
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)

if ((${#need[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "setup: cannot install ${need[*]}: this machine has no apt-get; install them by hand"
  elif [[ $(id -u) -ne 0 ]]; then
    echo "setup: cannot install ${need[*]}: apt-get needs root; run: sudo apt-get install -y ${need[*]}"
  else
    echo "setup: installing ${need[*]}"
    apt-get update -qq || echo "setup: apt-get update failed; trying with the package lists there are"
    found=()
    for p in "${need[@]}"; do
      if apt-cache show "$p" >/dev/null 2>&1; then found+=("$p"); else
        echo "setup: cannot install $p: no apt source offers it (the google-cloud-cli packages need Google's Cloud SDK apt repository)"
      fi
    done
    if ((${#found[@]})) && ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${found[@]}" >/dev/null; then
      echo "setup: apt-get could not install ${found[*]}: see its messages above"
    fi
  fi
fi

verify=scripts/webhook-verify
if command -v npm >/dev/null && [[ ! -d $verify/node_modules/standardwebhooks ]]; then
  (cd "$verify" && npm ci --no-audit --no-fund --silent) ||
    echo "setup: cannot install the standardwebhooks npm package into $verify: npm ci failed (see above)"
fi

go mod download
