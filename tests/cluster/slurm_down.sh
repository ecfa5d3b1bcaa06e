#!/usr/bin/env bash
# Stops the cluster of tests/cluster/slurm_up.sh: slurmd, slurmctld and munged, by the PIDs in
# their PID files (all three at once, then waits up to 10 s before SIGKILL). Its state directory
# stays, with the logs; slurm_up.sh starts afresh from it.
set -uo pipefail

DIR=${SLURM_TEST_DIR:-${TMPDIR:-/tmp}/ssl_lab_slurm}
stopping=()
for daemon in slurmd slurmctld munged; do
    pidfile=$DIR/$daemon.pid
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    # a stale PID file may name another process by now: only ever signal the daemon itself
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$daemon" ]] && kill "$pid" && stopping+=("$daemon:$pid")
    rm -f "$pidfile"
done
for entry in "${stopping[@]}"; do
    pid=${entry#*:}
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "slurm_down: stopped ${entry%:*} ($pid)" >&2
done
