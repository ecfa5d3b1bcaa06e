#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try and test `hydra/launcher=slurm` for real.
#
#   eval "$(tests/cluster/slurm_up.sh)"     # as root: prints `export SLURM_CONF=...`
#   sbatch / squeue / ssl-lab -m hydra/launcher=slurm ...
#   tests/cluster/slurm_down.sh             # stops the daemons by their PIDs
#
# Installs slurmctld, slurmd, munge and slurm-client with apt-get when missing, writes a
# slurm.conf for this host (`hostname -s`, `nproc` CPUs, its memory) with its key, sockets, state
# and logs in $SLURM_TEST_DIR, starts munged, slurmctld and slurmd, and waits until the node is
# idle. Idempotent: a cluster that is already up is left as it is. Accounting is off (no
# slurmdbd), as on many small clusters: sacct fails, squeue answers.
set -euo pipefail

DIR=${SLURM_TEST_DIR:-${TMPDIR:-/tmp}/ssl_lab_slurm}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys those two: not here
say() { echo "slurm_up: $*" >&2; }
die() { say "$*"; exit 1; }
alive() { [[ -s $DIR/$1.pid && $(cat "/proc/$(cat "$DIR/$1.pid")/comm" 2>/dev/null) == "$1" ]]; }
state() { SLURM_CONF=$CONF sinfo -h -n "$HOST" -o %t 2>/dev/null; }

# up: the daemons run and the node takes jobs (idle, or busy with some)
if alive munged && alive slurmctld && alive slurmd && [[ $(state) =~ ^(idle|mix|alloc) ]]; then
    say "already up ($DIR)"
    echo "export SLURM_CONF=$CONF"
    exit 0
fi

[[ $(id -u) == 0 ]] || die "needs root to start it (munged, slurmctld and slurmd run as root)"
mkdir -p "$DIR"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    command -v apt-get >/dev/null || die "slurmctld, slurmd, munge or sbatch missing, and no apt-get"
    say "installing slurmctld slurmd munge slurm-client"
    export DEBIAN_FRONTEND=noninteractive
    install() { apt-get install -y -q --no-install-recommends slurmctld slurmd munge slurm-client; }
    { install || { apt-get update -q && install; }; } >"$DIR/apt.log" 2>&1 \
        || die "apt-get install failed: see $DIR/apt.log"
fi

"$(dirname "$0")/slurm_down.sh" 2>/dev/null || true  # a half-started cluster: stop what is left
mkdir -p "$DIR/munge" "$DIR/ctld" "$DIR/spool"
chmod 755 "$DIR/munge"  # its socket: any user may submit jobs (they run as that user)
[[ -s $DIR/munge/munge.key ]] || head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
chmod 400 "$DIR/munge/munge.key"

MEMORY=$(awk '/^MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
cat >"$CONF" <<CONF
# written by tests/cluster/slurm_up.sh: one node, this host
ClusterName=ssl-lab-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmctldPort=${SLURM_TEST_CTLD_PORT:-6817}
SlurmdPort=${SLURM_TEST_D_PORT:-6818}
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it starts again (default 120 s)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
# no cgroups (containers often lack them) and no accounting (no slurmdbd)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
# CPUs are the consumable resource: two 1-CPU jobs run side by side on 2 CPUs
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
# the scheduler looks at pending jobs every second (default 60 s): a requeued job starts as soon
# as its wait (cred_expire) is over
SchedulerParameters=sched_interval=1
ReturnToService=2
# a job that is ended (scancel, requeue) gets SIGTERM, then this long to save before SIGKILL
KillWait=30
NodeName=$HOST CPUs=$CPUS RealMemory=$MEMORY State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF=$CONF
started=$SECONDS
munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" --seed-file="$DIR/munge/seed" \
    || die "munged did not start: see $DIR/munged.log"
slurmctld -c -f "$CONF" || die "slurmctld did not start: see $DIR/slurmctld.log"
slurmd -f "$CONF" || die "slurmd did not start: see $DIR/slurmd.log"
for _ in $(seq 100); do
    [[ $(state) == idle ]] && break
    sleep 0.2
done
[[ $(state) == idle ]] || die "the node is not idle after 20 s: see $DIR/slurmctld.log and $DIR/slurmd.log"
say "up in $((SECONDS - started)) s: node $HOST, $CPUS CPUs, state in $DIR"
echo "export SLURM_CONF=$CONF"
