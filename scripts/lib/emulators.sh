# Sourced by scripts/test.sh and scripts/dev.sh: starts Google's Firestore and
# Pub/Sub emulators on free loopback ports, exports the variables the client
# libraries read, and stops them (with every child Java process) on exit.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL SECONDS: poll until URL answers.
wait_http() {
  local url=$1 deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    if ((SECONDS > deadline)); then return 1; fi
    sleep 0.3
  done
}

EMULATOR_PIDS=()
EMULATOR_LOGS=${EMULATOR_LOGS:-$(mktemp -d)}

start_emulators() {
  if ! command -v gcloud >/dev/null; then
    echo "gcloud not found: install google-cloud-cli with its firestore and pubsub emulators (see README)" >&2
    return 1
  fi
  local fs_port ps_port
  fs_port=$(free_port)
  ps_port=$(free_port)
  # setsid gives each emulator its own process group so stop_emulators ends its Java child too.
  setsid gcloud emulators firestore start --host-port="127.0.0.1:$fs_port" --quiet \
    >"$EMULATOR_LOGS/firestore.log" 2>&1 &
  EMULATOR_PIDS+=($!)
  setsid gcloud beta emulators pubsub start --host-port="127.0.0.1:$ps_port" --quiet \
    >"$EMULATOR_LOGS/pubsub.log" 2>&1 &
  EMULATOR_PIDS+=($!)
  export FIRESTORE_EMULATOR_HOST="127.0.0.1:$fs_port"
  export PUBSUB_EMULATOR_HOST="127.0.0.1:$ps_port"
  if ! wait_http "http://$FIRESTORE_EMULATOR_HOST/" 90; then
    echo "Firestore emulator did not start; log:" >&2; tail -20 "$EMULATOR_LOGS/firestore.log" >&2; return 1
  fi
  if ! wait_http "http://$PUBSUB_EMULATOR_HOST/" 90; then
    echo "Pub/Sub emulator did not start; log:" >&2; tail -20 "$EMULATOR_LOGS/pubsub.log" >&2; return 1
  fi
  echo "emulators: firestore $FIRESTORE_EMULATOR_HOST, pubsub $PUBSUB_EMULATOR_HOST" >&2
}

stop_emulators() {
  local pid
  for pid in "${EMULATOR_PIDS[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${EMULATOR_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null
  done
  EMULATOR_PIDS=()
}
