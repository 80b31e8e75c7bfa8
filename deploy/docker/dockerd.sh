#!/usr/bin/env bash
# Start or stop a Docker daemon for the container stack, on machines without systemd.
#
#   deploy/docker/dockerd.sh start    # start dockerd unless a daemon already answers
#   deploy/docker/dockerd.sh stop     # stop it again, only if `start` started it
#   deploy/docker/dockerd.sh status
#
# `start` leaves an existing daemon alone (and `stop` then does nothing), so a
# developer's own Docker is never touched. A daemon started here keeps its
# images in DRIFTLOOP_DOCKER_DATA_ROOT (outside the repository, so image layers
# stay cached between runs while a fresh machine still builds everything).
# dockerd changes the host's firewall (its own iptables chains, FORWARD policy,
# IP forwarding, the docker0 bridge): `stop` takes back exactly what it added.
# Installing the daemon needs root; `start` installs Debian's docker.io with
# apt-get when dockerd is missing and DRIFTLOOP_DOCKER_INSTALL=1 (the CI default).
set -euo pipefail

DATA_ROOT="${DRIFTLOOP_DOCKER_DATA_ROOT:-/var/lib/driftloop-docker}"
STATE_DIR="${DRIFTLOOP_DOCKER_STATE_DIR:-/run/driftloop-docker}"
EXEC_ROOT="$STATE_DIR/exec"
SOCKET="${DRIFTLOOP_DOCKER_SOCKET:-/var/run/docker.sock}"
PID_FILE="$STATE_DIR/dockerd.pid"
LOG_FILE="$STATE_DIR/dockerd.log"
START_TIMEOUT="${DRIFTLOOP_DOCKER_START_TIMEOUT:-90}"
DOCKER_CHAINS=(DOCKER DOCKER-USER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2)

log() { echo "dockerd.sh: $*" >&2; }

answers() {
    docker -H "unix://$SOCKET" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

ensure_installed() {
    command -v dockerd >/dev/null && return 0
    if [[ "${DRIFTLOOP_DOCKER_INSTALL:-0}" != 1 ]]; then
        log "dockerd is not installed: install Docker (Debian: apt-get install docker.io)" \
            "or set DRIFTLOOP_DOCKER_INSTALL=1 to let this script do it"
        exit 1
    fi
    log "installing docker.io with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q docker.io >&2
}

start() {
    if answers; then
        log "a Docker daemon already answers on $SOCKET: using it, not starting another"
        return 0
    fi
    ensure_installed
    mkdir -p "$STATE_DIR" "$EXEC_ROOT" "$DATA_ROOT"
    # What the host looked like before, so `stop` can put it back.
    iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}' >"$STATE_DIR/forward-policy" || true
    cat /proc/sys/net/ipv4/ip_forward >"$STATE_DIR/ip-forward"
    ip link show docker0 >/dev/null 2>&1 && echo yes >"$STATE_DIR/had-docker0" || echo no >"$STATE_DIR/had-docker0"
    log "starting dockerd (data root $DATA_ROOT, log $LOG_FILE)"
    setsid dockerd \
        --data-root "$DATA_ROOT" \
        --exec-root "$EXEC_ROOT" \
        --pidfile "$PID_FILE" \
        --host "unix://$SOCKET" \
        >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$STATE_DIR/started-by-driftloop"
    local waited=0
    until answers; do
        if ! kill -0 "$(cat "$STATE_DIR/started-by-driftloop")" 2>/dev/null; then
            log "dockerd exited during start-up; last lines of $LOG_FILE:"
            tail -n 20 "$LOG_FILE" >&2
            cleanup_host
            rm -f "$STATE_DIR/started-by-driftloop"
            exit 1
        fi
        if ((waited >= START_TIMEOUT)); then
            log "dockerd did not answer on $SOCKET within ${START_TIMEOUT}s; see $LOG_FILE"
            stop
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "dockerd answers on $SOCKET after ${waited}s"
}

# Delete every rule that jumps to or mentions Docker's chains and bridges, then the chains.
cleanup_table() {
    local table="$1" rule
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A ' | grep -E 'DOCKER|docker0|br-[0-9a-f]{12}' |
        while read -r rule; do
            # shellcheck disable=SC2086 # the rule is iptables' own word list
            iptables -t "$table" -D ${rule#-A } 2>/dev/null || true
        done
    for chain in "${DOCKER_CHAINS[@]}"; do
        iptables -t "$table" -F "$chain" 2>/dev/null || true
        iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
}

cleanup_host() {
    if command -v iptables >/dev/null; then
        cleanup_table filter
        cleanup_table nat
        local policy
        policy="$(cat "$STATE_DIR/forward-policy" 2>/dev/null || true)"
        [[ -n "$policy" ]] && iptables -P FORWARD "$policy" 2>/dev/null || true
    fi
    if [[ -f "$STATE_DIR/ip-forward" ]]; then
        cat "$STATE_DIR/ip-forward" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
    fi
    if [[ "$(cat "$STATE_DIR/had-docker0" 2>/dev/null || echo yes)" == no ]]; then
        ip link delete docker0 2>/dev/null || true
    fi
}

stop() {
    local marker="$STATE_DIR/started-by-driftloop" pid
    if [[ ! -f "$marker" ]]; then
        log "no daemon started by this script: nothing to stop"
        return 0
    fi
    pid="$(cat "$marker")"
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd still running after 60s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # containerd started by dockerd exits with it; a leftover one is ours too.
    if [[ -f "$EXEC_ROOT/containerd/containerd.pid" ]]; then
        kill -TERM "$(cat "$EXEC_ROOT/containerd/containerd.pid")" 2>/dev/null || true
    fi
    cleanup_host
    rm -f "$marker" "$STATE_DIR/forward-policy" "$STATE_DIR/ip-forward" "$STATE_DIR/had-docker0"
    log "stopped; firewall rules and docker0 removed, image cache kept in $DATA_ROOT"
}

status() {
    if answers; then
        echo "a Docker daemon answers on $SOCKET"
        [[ -f "$STATE_DIR/started-by-driftloop" ]] && echo "started by this script (pid $(cat "$STATE_DIR/started-by-driftloop"))"
        return 0
    fi
    echo "no Docker daemon answers on $SOCKET"
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
