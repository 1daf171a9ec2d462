#!/usr/bin/env bash
# A real single-node SLURM cluster (Debian's slurm-wlm 22.05) on this machine, for tests/test_slurm.py.
#
#   tests/slurm/cluster.sh start    install if missing, configure, start every daemon (idempotent)
#   tests/slurm/cluster.sh stop     stop the daemons this script started, by PID, in reverse order
#   tests/slurm/cluster.sh status   exit 0 when the node is up and idle/allocated
#
# Run as root on a machine without systemd: every daemon is started by hand, in the order
# munged -> mariadbd -> slurmdbd -> `sacctmgr add cluster` -> slurmctld -> slurmd, each waited for.
# The node declares one fake GPU of type `testgpu` (gres.conf `File=/dev/null`) so that GPU jobs
# schedule; the jobs then see CUDA_VISIBLE_DEVICES=0 but no device, and the code falls back to CPU.
# Everything the script writes lives in $BESTBATCH_SLURM_DIR (default /var/tmp/bestbatch-slurm),
# plus the symlink /etc/slurm/slurm.conf, which `stop` removes again: with no slurm.conf, SLURM's
# client tools fail at once, so a `snakemake` started later does not wait ~10 s on the SLURM
# plugin's `scontrol show config` call for a controller that is gone.
set -euo pipefail

DIR=${BESTBATCH_SLURM_DIR:-/var/tmp/bestbatch-slurm}
CLUSTER=bestbatch
HOST=$(hostname -s)
ETC_CONF=/etc/slurm/slurm.conf
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=bestbatch-test-only
GPU_TYPE=${BESTBATCH_SLURM_GPU_TYPE:-testgpu}
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)   # start order; stop is the reverse

log() { echo "[slurm-cluster] $*" >&2 || true; }
die() { log "error: $*"; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out after ${limit}s waiting for $what"; return 1; }
    sleep 0.2
  done
}

pid_of() { [[ -s $DIR/pids/$1.pid ]] && cat "$DIR/pids/$1.pid"; }
alive() { local pid; pid=$(pid_of "$1") && kill -0 "$pid" 2>/dev/null; }

# spawn NAME COMMAND...: start a foreground daemon in its own session, detached from our stdio
# (a caller capturing our output must not wait on the daemon's pipes), and record its PID.
spawn() {
  local name=$1; shift
  setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
  echo $! >"$DIR/pids/$name.pid"
  log "started $name (pid $!)"
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$DIR/log/apt.log" 2>&1 \
    || { tail -20 "$DIR/log/apt.log" >&2; die "apt-get install failed"; }
}

write_configs() {
  # The node as slurmd sees it (CPUs, sockets, cores, threads, memory), less 1 GiB for the daemons.
  local hw cpus_line mem
  hw=$(slurmd -C | head -1)
  cpus_line=$(tr ' ' '\n' <<<"$hw" | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
  mem=$(($(tr ' ' '\n' <<<"$hw" | sed -n 's/^RealMemory=//p') - 1024))
  cat >"$DIR/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a one-node test cluster with one fake GPU.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups here: track processes by their parent, bind no CPUs
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without it a job that asks for no memory takes the whole node
DefMemPerCPU=1000
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
# record GPU requests, typed and untyped, in the accounting (sacct ReqTRES/AllocTRES) and the job's --comment
AccountingStorageTRES=gres/gpu,gres/gpu:$GPU_TYPE
AccountingStoreFlags=job_comment
NodeName=$HOST NodeAddr=127.0.0.1 ${cpus_line}RealMemory=$mem Gres=gpu:$GPU_TYPE:1 State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/gres.conf" <<EOF
# One GPU that is not there: File= is required or slurmd reports 0 GPUs and the node drains.
# Typed, so that both --gpus=1 and --gpus=$GPU_TYPE:1 (the profile's gpu_model) schedule.
AutoDetect=off
NodeName=$HOST Name=gpu Type=$GPU_TYPE Count=1 File=/dev/null
EOF
  cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
  chmod 600 "$DIR/slurmdbd.conf"
  # Clients (sbatch, sacct, and srun inside a job, where SLURM_CONF is dropped) read /etc/slurm.
  mkdir -p /etc/slurm
  if [[ -e $ETC_CONF || -L $ETC_CONF ]] && [[ $(readlink "$ETC_CONF" || true) != "$DIR/slurm.conf" ]]; then
    die "$ETC_CONF exists and is not this script's: refusing to replace a real SLURM configuration"
  fi
  ln -sfn "$DIR/slurm.conf" "$ETC_CONF"
}

start_munged() {
  if munge -n </dev/null >/dev/null 2>&1; then log "munged already running"; return; fi
  [[ -s /etc/munge/munge.key ]] || { mungekey --create --force && chown munge:munge /etc/munge/munge.key; }
  install -d -o munge -g munge -m 755 /run/munge
  spawn munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
  wait_for 20 munged sh -c 'munge -n </dev/null | unmunge'
}

start_mariadbd() {
  if mariadb -e 'select 1' >/dev/null 2>&1; then
    log "mariadbd already running"
  else
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$DIR/log/mariadb-install.log" 2>&1
    install -d -o mysql -g mysql /run/mysqld
    spawn mariadbd /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306
    wait_for 60 mariadbd mariadb -e 'select 1'
  fi
  mariadb <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
  alive slurmdbd || spawn slurmdbd env SLURM_CONF="$DIR/slurm.conf" /usr/sbin/slurmdbd -D
  wait_for 60 slurmdbd sacctmgr -n list cluster
  sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
}

node_state() { sinfo -h -o %t 2>/dev/null | head -1; }
node_up() { [[ $(node_state) =~ ^(idle|mix|alloc)$ ]]; }

start_slurm() {
  # -c: a clean start (no saved jobs or node states, so no drain left over from an earlier run)
  alive slurmctld || spawn slurmctld env SLURM_CONF="$DIR/slurm.conf" /usr/sbin/slurmctld -D -c
  wait_for 30 slurmctld scontrol ping
  alive slurmd || spawn slurmd env SLURM_CONF="$DIR/slurm.conf" /usr/sbin/slurmd -D
  if ! wait_for 60 "node $HOST to be idle" node_up; then
    sinfo -R >&2 || true
    tail -20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    return 1
  fi
}

start() {
  [[ $EUID -eq 0 ]] || die "run as root (installs packages and starts daemons)"
  mkdir -p "$DIR"/{pids,log,run,state,spool}
  if alive slurmctld && alive slurmd && node_up; then log "already up: $(sinfo -h -o '%P %D %t %G')"; return; fi
  install_packages
  write_configs
  start_munged
  start_mariadbd
  start_slurmdbd
  start_slurm
  log "up: $(sinfo -h -o 'partition %P, %D node(s), %t, gres %G')"
}

stop_one() {
  local name=$1 pid
  pid=$(pid_of "$name") || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then log "$name (pid $pid) ignores SIGTERM: SIGKILL"; kill -KILL "$pid"; fi
      sleep 0.2
    done
    log "stopped $name (pid $pid)"
  fi
  rm -f "$DIR/pids/$name.pid"
}

stop() {
  local i jobs
  trap '' PIPE  # a reader that went away (`| head`) must not leave half the daemons running
  # the cluster's own jobs first (a test that failed mid-run may leave some): they would outlive slurmd
  if alive slurmctld && jobs=$(squeue -h -o %i 2>/dev/null) && [[ -n $jobs ]]; then
    log "cancelling jobs: $(tr '\n' ' ' <<<"$jobs")"
    scancel $jobs || true
    wait_for 30 "the jobs to end" sh -c '[ -z "$(squeue -h -o %i)" ]' || true
  fi
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_one "${DAEMONS[i]}"; done
  # no slurm.conf: client tools fail at once instead of waiting for a controller that is gone
  if [[ $(readlink "$ETC_CONF" 2>/dev/null || true) == "$DIR/slurm.conf" ]]; then rm -f "$ETC_CONF"; fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) node_up ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
