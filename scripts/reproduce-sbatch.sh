#!/usr/bin/env bash
# `make reproduce-sbatch`: the reproduction as a DAG of Slurm batch jobs, one per stage run, with
# --dependency=afterok edges read from Make's own database of the reproduce targets — the same graph
# `make reproduce` runs, never a second hand-kept list. Each job runs its one Make target with every
# prerequisite assumed done (`make -o`), so it executes exactly its stage command. A job whose
# dependency failed is cancelled by Slurm (--kill-on-invalid-dep), never left pending forever.
#
# Usage: scripts/reproduce-sbatch.sh OUT_DIR SUBMIT [make variables…]
#   OUT_DIR  where the job scripts, submit.sh and jobs.tsv go
#   SUBMIT   1: submit now (needs sbatch); 0: write only (run OUT_DIR/submit.sh later)
# Environment: SBATCH_FLAGS (default "--ntasks=1 --cpus-per-task=2") is given to every sbatch.
set -euo pipefail
out=$1; submit=$2; shift 2
vars=("$@")
repo=$(pwd)
flags=${SBATCH_FLAGS:---ntasks=1 --cpus-per-task=2}
mkdir -p "$out"

# The reproduce targets and their prerequisites, from Make's database.
declare -A deps
while IFS= read -r line; do
  target=${line%%:*}
  rest=${line#*:}
  deps[$target]=$(tr ' ' '\n' <<< "$rest" | grep -E '^reproduce' | tr '\n' ' ' || true)
done < <(make --no-print-directory -pnq -f Makefile "${vars[@]}" reproduce 2>/dev/null \
           | grep -E '^reproduce[A-Za-z0-9_.-]*:( |$)' | grep -v ':=' | sort -u)
[ -n "${deps[reproduce]+x}" ] || { echo "reproduce-sbatch: Make knows no 'reproduce' target" >&2; exit 1; }

# Depth-first from `reproduce`: prerequisites before their dependents.
declare -A seen
order=()
visit() {
  local t=$1
  [ -n "${seen[$t]+x}" ] && return
  seen[$t]=1
  for d in ${deps[$t]:-}; do visit "$d"; done
  order+=("$t")
}
visit reproduce

quoted_vars=$(printf ' %q' "${vars[@]}")
{
  echo '#!/usr/bin/env bash'
  echo "# Submits the reproduction's $((${#order[@]})) jobs in dependency order (written by scripts/reproduce-sbatch.sh)."
  echo 'set -euo pipefail'
  echo "cd $(printf %q "$repo")"
  echo 'declare -A job'
  echo ": > $(printf %q "$out/jobs.tsv")"
} > "$out/submit.sh"
for t in "${order[@]}"; do
  assume=""
  for d in ${deps[$t]:-}; do assume+=" -o $d"; done
  cat > "$out/$t.sh" <<JOB
#!/usr/bin/env bash
#SBATCH --job-name=cxr-$t
#SBATCH --output=$out/$t.%j.log
# Stage run '$t' of the reproduction; its prerequisites ran as the jobs it depends on.
set -euo pipefail
cd $(printf %q "$repo")
exec make --no-print-directory$quoted_vars -o build$assume $t
JOB
  chmod +x "$out/$t.sh"
  after=""
  for d in ${deps[$t]:-}; do after+=":\${job[$d]}"; done
  {
    if [ -n "$after" ]; then
      echo "job[$t]=\$(sbatch --parsable $flags --kill-on-invalid-dep=yes --dependency=afterok$after $(printf %q "$out/$t.sh"))"
    else
      echo "job[$t]=\$(sbatch --parsable $flags $(printf %q "$out/$t.sh"))"
    fi
    echo "printf '%s\t%s\n' \"\${job[$t]}\" $t >> $(printf %q "$out/jobs.tsv")"
  } >> "$out/submit.sh"
done
echo "echo \"reproduce-sbatch: submitted ${#order[@]} jobs (ids in $out/jobs.tsv); the last, 'reproduce', writes the report\"" >> "$out/submit.sh"
chmod +x "$out/submit.sh"
echo "reproduce-sbatch: ${#order[@]} job scripts and submit.sh in $out"
if [ "$submit" = 1 ]; then "$out/submit.sh"; fi
