#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, from Debian's packages, to try and test the slurm profile.
#
#   bash profiles/slurm/local-slurm.sh start    # install if needed, configure, start (idempotent)
#   bash profiles/slurm/local-slurm.sh stop
#   bash profiles/slurm/local-slurm.sh status
#
# Needs root and Debian (apt). No accounting database: `sacct` does not work, so Snakemake's
# slurm executor must read job states with `squeue` (profiles/slurm sets that), and finished
# jobs stay visible to squeue for MinJobAge seconds. Every finished job is also appended to
# $STATE/jobcomp.log (jobcomp/filetxt): SLURM's own record of what ran.
set -euo pipefail

STATE=${CYTOTRAIL_SLURM_DIR:-/var/tmp/cytotrail-slurm}
CONF=/etc/slurm/slurm.conf
PARTITION=debug
NODE=$(hostname -s)

say() { echo "[local-slurm] $*" >&2; }

running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
     && command -v sbatch >/dev/null; then
    return
  fi
  say "installing slurmctld, slurmd, slurm-client and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
}

configure() {
  install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
  install -d -o munge -g munge -m 0711 /var/lib/munge
  install -d -o munge -g munge -m 0755 /run/munge
  [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key --force
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key

  mkdir -p "$STATE"/{ctld,spool} /etc/slurm
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  cat > "$CONF" <<EOF
# written by cytotrail's profiles/slurm/local-slurm.sh
ClusterName=cytotrail-local
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  install_packages
  configure
  running /run/munge/munged.pid || setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --force
  for _ in $(seq 50); do [[ -S /run/munge/munge.socket.2 ]] && break; sleep 0.1; done
  running "$STATE/slurmctld.pid" || slurmctld -f "$CONF"
  running "$STATE/slurmd.pid" || slurmd -f "$CONF"
  local state=""
  for _ in $(seq 60); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true)
    case $state in
      idle|mixed|allocated|completing) say "node $NODE is $state"; return 0 ;;
      down*|drain*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  say "node $NODE did not come up (state: ${state:-unknown}); see $STATE/*.log"
  return 1
}

stop() {
  local pidfile
  for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" /run/munge/munged.pid; do
    if running "$pidfile"; then
      kill "$(cat "$pidfile")"
      for _ in $(seq 50); do running "$pidfile" || break; sleep 0.1; done
    fi
  done
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  status) sinfo; squeue ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
