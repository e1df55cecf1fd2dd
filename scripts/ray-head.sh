#!/usr/bin/env bash
# Runs a command next to a real Ray head: `scripts/ray-head.sh cargo test --all-targets`.
#
# The head's dashboard URL is exported to the command as KUBERAY_TEST_RAY_DASHBOARD (tests/ray_head.rs reads it).
# Ray comes from a venv cached per Ray version (installed on first use, about a minute), so later runs only pay for
# the head's start (6-16 s on 2 cores). The head listens on loopback, on free ports, so it does not collide with
# another head on the machine; it is stopped, and its temp dir removed, however the command ends. Notes on each
# setting: ../shared/spec/ray-dashboard-api.md, §2 and §7.
set -euo pipefail

RAY_VERSION=2.60.0
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

venv="${XDG_CACHE_HOME:-$HOME/.cache}/kuberay/ray-venv-$RAY_VERSION"
# Any CPython Ray ships wheels for; 3.11 when there is one (the version the spec was observed with).
python="${KUBERAY_RAY_PYTHON:-$(command -v python3.11 || command -v python3)}"

# A venv is usable once its marker is written; a half-done install (interrupted, failed) is started over. The venv
# is built in place: its scripts' shebangs name its path, so it cannot be moved there afterwards. The lock keeps two
# runs from installing into the same place at once.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
command -v flock >/dev/null && flock 9
if [ ! -f "$venv/.installed" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "ray-head: installing ray[default,serve]==$RAY_VERSION into $venv with $("$python" --version)" >&2
    started=$SECONDS
    rm -rf "$venv"
    "$python" -m venv "$venv" || {
        echo "ray-head: '$python -m venv' failed (Debian and Ubuntu need the python3-venv package)" >&2
        exit 1
    }
    # No pip cache: the venv is the cache.
    "$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "ray[default,serve]==$RAY_VERSION"
    touch "$venv/.installed"
    echo "ray-head: installed in $((SECONDS - started)) s" >&2
fi
exec 9>&-

# Short on purpose: Ray puts Unix sockets under <temp-dir>/session_<date>_<pid>/sockets/, and AF_UNIX paths end at
# 107 bytes. TMPDIR inside it too, so the forkserver dirs (/tmp/pymp-*) Ray leaves behind go with it.
scratch="$(mktemp -d /tmp/krh.XXXXXX)"
mkdir -p "$scratch/t"
head_pid=""

# The processes of the head's session: `ray start` runs under setsid, and everything Ray starts stays in that
# session (Serve's actors take process groups of their own, so the group is not enough).
session_pids() {
    ps -eo pid=,sid= | awk -v sid="$head_pid" '$2 == sid { print $1 }'
}

stop_head() {
    if [ -n "$head_pid" ]; then
        # On SIGTERM, `ray start --block` stops its daemons as `ray stop` would, and exits; whatever of its session
        # is left after that (or after 10 s) is ended too. This stops this head and nothing else: `ray stop` would
        # stop every Ray head of the user on the machine.
        local stopping=$SECONDS pids
        kill -TERM "$head_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$head_pid" 2>/dev/null || break
            sleep 0.2
        done
        pids="$(session_pids)"
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086 # one pid a word
            kill -TERM $pids 2>/dev/null || true
            sleep 2
            pids="$(session_pids)"
            # shellcheck disable=SC2086
            [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
        fi
        echo "ray-head: head stopped in $((SECONDS - stopping)) s" >&2
    fi
    rm -rf "$scratch"
}

trap stop_head EXIT
trap 'exit 130' INT TERM

# Nine free loopback ports, taken at once so they differ.
read -r gcs dashboard client agent_http agent_grpc metrics runtime_env autoscaler_metrics dashboard_metrics < <(
    "$venv/bin/python" -c '
import socket
sockets = [socket.socket() for _ in range(9)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))'
)

echo "ray-head: starting Ray $RAY_VERSION, dashboard on 127.0.0.1:$dashboard" >&2
started=$SECONDS
# PATH: job entrypoints inherit it, and `python` in them must be the venv's (with ray).
PATH="$venv/bin:$PATH" TMPDIR="$scratch/t" RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled \
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 AUTOSCALER_METRIC_PORT="$autoscaler_metrics" \
    DASHBOARD_METRIC_PORT="$dashboard_metrics" \
    setsid "$venv/bin/ray" start --head --block --disable-usage-stats --temp-dir="$scratch/r" \
    --node-ip-address=127.0.0.1 --port="$gcs" --num-cpus=2 --num-gpus=0 --object-store-memory=268435456 \
    --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$dashboard" \
    --ray-client-server-port="$client" --dashboard-agent-listen-port="$agent_http" \
    --dashboard-agent-grpc-port="$agent_grpc" --metrics-export-port="$metrics" \
    --runtime-env-agent-port="$runtime_env" >"$scratch/ray-start.log" 2>&1 &
head_pid=$!
disown "$head_pid"  # no "Killed" notice from bash if it has to be killed

url="http://127.0.0.1:$dashboard"
until "$venv/bin/python" -c "import urllib.request, sys; urllib.request.urlopen('$url/api/version', timeout=2)" 2>/dev/null; do
    if ! kill -0 "$head_pid" 2>/dev/null || [ $((SECONDS - started)) -ge 120 ]; then
        echo "ray-head: the head's dashboard did not answer at $url within $((SECONDS - started)) s; ray start said:" >&2
        cat "$scratch/ray-start.log" >&2
        exit 1
    fi
    sleep 0.5
done
echo "ray-head: dashboard up at $url after $((SECONDS - started)) s" >&2

status=0
# KUBERAY_TEST_RAY_BIN: where the real `ray` CLI is, for the simulated cluster's submitters (tests/ray_head_rayjob.rs).
KUBERAY_TEST_RAY_DASHBOARD="$url" KUBERAY_TEST_RAY_BIN="$venv/bin" "$@" || status=$?
exit "$status"
