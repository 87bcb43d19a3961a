#!/usr/bin/env bash
# The reproduction on a real Slurm: a one-node cluster on this machine (no systemd, no cgroups), the
# `ci` reproduction through `srun` job steps (make -j2 … LAUNCH="srun …") and as a DAG of `sbatch`
# jobs (make reproduce-sbatch), each checked against Slurm's job-completion records and against a
# plain `make` run byte for byte; then a job whose dependency fails, which must end, not hang.
# Stops only the daemons it started. Run as root (it installs slurm-wlm and munge when missing).
#
# Usage: scripts/slurm-local.sh [PROFILE]   (default ci)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-ci}
work=$(mktemp -d /tmp/cxr-slurm.XXXXXX)
store=artifacts-slurm  # every run writes here, then is moved aside: artifacts name their inputs by this path
say() { echo "slurm-local: $*"; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

started=()
cleanup() {
  for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${started[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ ${#started[@]} -gt 0 ] && say "stopped the daemons it started (pids ${started[*]})"
}
trap cleanup EXIT

# munge: authentication between the Slurm daemons and clients.
if ! pgrep -x munged >/dev/null; then
  mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
  chown -R munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
  chmod 0400 /etc/munge/munge.key
  rm -f /run/munge/cxr-munged.pid
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/cxr-munged.pid
  for _ in $(seq 50); do [ -s /run/munge/cxr-munged.pid ] && break; sleep 0.1; done
  started+=("$(cat /run/munge/cxr-munged.pid)")
  say "munged started (pid ${started[-1]})"
fi

host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p "$work/state" "$work/spool"
cat > "$work/slurm.conf" <<CONF
ClusterName=cxr
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$work/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=30
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$work/slurm.conf
/usr/sbin/slurmctld -D -f "$SLURM_CONF" > "$work/slurmctld.out" 2>&1 &
started+=($!)
/usr/sbin/slurmd -D -f "$SLURM_CONF" > "$work/slurmd.out" 2>&1 &
started+=($!)
for _ in $(seq 100); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 0.2; done
sinfo -h -o %T | grep -qx idle || { say "the node never became idle; see $work/slurmd.log"; exit 1; }
say "one-node cluster up: $host, $cpus CPUs ($SLURM_CONF)"

records() { if [ -s "$work/jobcomp.txt" ]; then grep -c 'JobId=' "$work/jobcomp.txt" || true; else echo 0; fi; }
make build >/dev/null

# 1. A plain run, for the bytes to compare with (on one thread, as the jobs below get one CPU each).
rm -rf "$store" "$store-plain" "$store-srun" "$store-sbatch"
SLURM_CPUS_PER_TASK=1 make --no-print-directory reproduce PROFILE="$profile" ARTIFACTS="$store" > "$work/plain.log" 2>&1
mv "$store" "$store-plain"
say "plain make reproduce PROFILE=$profile: done"

# 2. Every stage command as a Slurm job step (srun outside an allocation makes one job per command).
before=$(records)
make --no-print-directory -j2 reproduce PROFILE="$profile" ARTIFACTS="$store" \
  LAUNCH="srun --ntasks=1 --cpus-per-task=1 --quiet" > "$work/srun.log" 2>&1
mv "$store" "$store-srun"
jobs=$(( $(records) - before ))
failed=$(sed -n "$((before + 1)),\$p" "$work/jobcomp.txt" | grep -vc 'JobState=COMPLETED.*ExitCode=0:0' || true)
say "make -j2 reproduce LAUNCH=srun: $jobs Slurm jobs recorded, $failed not COMPLETED with exit 0"
[ "$failed" = 0 ] && [ "$jobs" -gt 0 ] || { say "FAILED: see $work/jobcomp.txt"; exit 1; }

# 3. The sbatch DAG.
before=$(records)
make --no-print-directory reproduce-sbatch PROFILE="$profile" ARTIFACTS="$store" SUBMIT=1 \
  SBATCH_FLAGS="--ntasks=1 --cpus-per-task=1" > "$work/sbatch.log" 2>&1
dag=$store/runs/$profile/sbatch
total=$(wc -l < "$dag/jobs.tsv")
while squeue -h -o %i | grep -q .; do sleep 2; done
jobs=$(( $(records) - before ))
failed=$(sed -n "$((before + 1)),\$p" "$work/jobcomp.txt" | grep -vc 'JobState=COMPLETED.*ExitCode=0:0' || true)
say "make reproduce-sbatch SUBMIT=1: $total jobs submitted with afterok edges, $jobs recorded, $failed not COMPLETED with exit 0"
[ "$failed" = 0 ] && [ "$jobs" = "$total" ] || { say "FAILED: see $work/jobcomp.txt and $dag/*.log"; exit 1; }
cp "$work/jobcomp.txt" "$dag/jobcomp.txt"
mv "$store" "$store-sbatch"

# 4. Same bytes: every artifact file of the three stores (manifests hold wall times, the report's
# text quotes them, the DAG's own job scripts and logs exist only there).
for mode in srun sbatch; do
  if diff -r -q -x manifest.json -x report.md -x report.html -x '*.lock' -x sbatch "$store-plain" "$store-$mode" > "$work/diff-$mode.txt"; then
    say "$mode: every artifact file equals the plain run's ($(find "$store-plain" -type f ! -name manifest.json | wc -l) files)"
  else
    say "FAILED: $mode differs from the plain run:"; head "$work/diff-$mode.txt"; exit 1
  fi
done

# 5. A failed dependency ends its dependents (cancelled), it does not leave them pending.
bad=$(sbatch --parsable --output="$work/slurm-%j.out" --wrap false)
child=$(sbatch --parsable --output="$work/slurm-%j.out" --kill-on-invalid-dep=yes --dependency=afterok:$bad --wrap true)
for _ in $(seq 60); do squeue -h -j "$bad,$child" -o %i 2>/dev/null | grep -q . || break; sleep 1; done
state=$(grep "JobId=$child " "$work/jobcomp.txt" | sed -E 's/.*JobState=([A-Z_]+).*/\1/')
say "a job depending on a failed job ends as ${state:-(still queued)}"
[ "$state" = CANCELLED ] || { say "FAILED: the dependent job did not end"; exit 1; }

say "all checks passed; Slurm's records in $work/jobcomp.txt"
