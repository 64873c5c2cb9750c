#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/cluster/: Debian's slurm-wlm and munge.
#   bash tests/cluster/slurm.sh start   installs the packages where they are missing (as root), writes
#                                       /etc/slurm/slurm.conf, starts munged, slurmctld and slurmd; idempotent
#   bash tests/cluster/slurm.sh stop    stops the three daemons
# One node with every core, one partition (debug), no accounting, KillWait 10 s (SIGTERM to SIGKILL).
set -euo pipefail
action=${1:-start}
node=$(hostname -s)

if [ "$action" = stop ]; then
    pkill -x slurmd || true; pkill -x slurmctld || true; pkill -x munged || true
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "slurm.sh: SLURM is not installed; as root it installs Debian's slurm-wlm and munge." >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=mnist_exp_test
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=10
MinJobAge=600
InactiveLimit=0
NodeName=${node} NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
[ -f /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key

pgrep -x munged >/dev/null || munged --force 2>/dev/null
pgrep -x slurmctld >/dev/null || slurmctld -i
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
        echo "SLURM ready: node $node, partition debug"
        exit 0
    fi
    sleep 1
done
echo "slurm.sh: the node did not come up; see /var/log/slurm/" >&2
sinfo >&2 || true
exit 1
