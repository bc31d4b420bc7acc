#!/usr/bin/env bash
# `make run`: a local three-node Paddock cluster and one sidecar on 127.0.0.1, everything in a
# temp dir, until Ctrl-C. Ports: clients 2181-2183, admin 8080-8082, peers 2888-2890, sidecar
# health/metrics 9464 (override with CLIENT_PORT, ADMIN_PORT, PEER_PORT, SIDECAR_PORT).
set -euo pipefail

BIN=${BIN:?set BIN to the directory with paddock-server and paddock-sidecar}
CLIENT_PORT=${CLIENT_PORT:-2181}
ADMIN_PORT=${ADMIN_PORT:-8080}
PEER_PORT=${PEER_PORT:-2888}
SIDECAR_PORT=${SIDECAR_PORT:-9464}
DIR=$(mktemp -d -t paddock-run.XXXXXX)
PIDS=()

stop() {
    trap - EXIT INT TERM
    echo
    echo "stopping..."
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then echo "kept $DIR"; else rm -rf "$DIR"; fi
    exit 0
}
trap stop EXIT INT TERM

# Waits up to 30 s for a process's readiness line in FILE; fails with its log otherwise.
wait_line() {
    local file=$1 pattern=$2 log=$3
    for _ in $(seq 300); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "not ready after 30 s; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    return 1
}

members=""
connect=""
for id in 1 2 3; do
    members+="${members:+,}$id=127.0.0.1:$((PEER_PORT + id - 1))"
    connect+="${connect:+,}127.0.0.1:$((CLIENT_PORT + id - 1))"
done
for id in 1 2 3; do
    "$BIN/paddock-server" --id "$id" --data-dir "$DIR/node-$id/data" \
        --client-addr "127.0.0.1:$((CLIENT_PORT + id - 1))" --admin-addr "127.0.0.1:$((ADMIN_PORT + id - 1))" \
        --peer-addr "127.0.0.1:$((PEER_PORT + id - 1))" --initial-members "$members" \
        >"$DIR/node-$id.out" 2>"$DIR/node-$id.log" &
    PIDS+=($!)
done
for id in 1 2 3; do
    wait_line "$DIR/node-$id.out" "paddock-server listening" "$DIR/node-$id.log"
done

POD_NAME=local-0 POD_NAMESPACE=default POD_IP=127.0.0.1 \
    "$BIN/paddock-sidecar" --socket "$DIR/paddock.sock" --cluster "$connect" \
    --listen-addr "127.0.0.1:$SIDECAR_PORT" --join demo >"$DIR/sidecar.out" 2>"$DIR/sidecar.log" &
PIDS+=($!)
wait_line "$DIR/sidecar.out" "paddock-sidecar listening" "$DIR/sidecar.log"

S="$DIR/paddock.sock"
cat <<INFO

Paddock is running: 3 servers and 1 sidecar (logs in $DIR).

ZooKeeper clients:   $connect
  /usr/share/zookeeper/bin/zkCli.sh -server $connect
  echo srvr | nc 127.0.0.1 $CLIENT_PORT
Cluster state:       curl -s http://127.0.0.1:$ADMIN_PORT/v1/cluster
Metrics:             curl -s http://127.0.0.1:$ADMIN_PORT/metrics   (sidecar: http://127.0.0.1:$SIDECAR_PORT/metrics)

The sidecar's socket: S=$S
  curl --unix-socket \$S -X PUT http://paddock/v1/nodes/config/db -d '{"data": "pg://db:5432"}'
  curl --unix-socket \$S http://paddock/v1/nodes/config/db
  curl -N --unix-socket \$S 'http://paddock/v1/nodes/config?watch&recursive'
  curl -N --unix-socket \$S -X POST http://paddock/v1/locks/db-migrate        # holds the lock until Ctrl-C
  curl -N --unix-socket \$S -X POST http://paddock/v1/elections/primary/campaign
  curl --unix-socket \$S http://paddock/v1/groups/demo                         # this pod joined group demo

Ctrl-C stops everything.
INFO
wait
