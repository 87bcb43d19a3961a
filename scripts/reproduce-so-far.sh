#!/usr/bin/env bash
# `make reproduce-so-far`: the report of a reproduction that has not finished (still running, or
# interrupted), from the stage runs that are complete. A step counts as done when the folder its
# stage printed to RUN/<step>.path holds a complete artifact (manifest.json). Table 1 is scored
# on the U-Nets finished so far and Table 2 on the classifiers finished so far, each under its own
# "-so-far" name so the real run's artifacts (and what `segment predict --ensemble-of` reads) are
# never replaced; later tables and Fig 6 are included once their steps are done. The report says
# what is not in it yet.
#
# Usage: scripts/reproduce-so-far.sh RUN STAGE PROFILE LUNGS "LOSSES" [stage flags…]
set -euo pipefail
run=$1; stage=$2; profile=$3; lungs=$4; losses=$5; shift 5
flags=("$@")

# The artifact folder of a finished step, or nothing.
done_step() {
  local file="$run/$1.path" folder
  [ -s "$file" ] || return 1
  folder=$(tail -n 1 "$file")
  [ -f "$folder/manifest.json" ] || return 1
  echo "$folder"
}

args=()
if folder=$(done_step table1); then
  args+=(--segmentation "$folder")
elif compgen -G "$run/unet-*.path" >/dev/null; then
  unets=0
  for file in "$run"/unet-*.path; do step=$(basename "$file" .path); done_step "$step" >/dev/null && unets=$((unets + 1)); done
  if [ "$unets" -gt 0 ]; then
    echo "reproduce-so-far: Table 1 of the $unets U-Net(s) finished so far" >&2
    args+=(--segmentation "$("$stage"/segment evaluate "${flags[@]}" --trained-on "$lungs" --data "$lungs" --name "$lungs-so-far" | tail -n 1)")
  fi
fi

if folder=$(done_step table2); then
  args+=(--table2 "$folder")
else
  files=(); names=()
  for loss in $losses; do
    if folder=$(done_step "classify-$loss"); then files+=("$folder/predictions-test.csv"); names+=("$loss"); fi
  done
  if [ ${#files[@]} -gt 0 ]; then
    echo "reproduce-so-far: Table 2 of the ${#files[@]} classifier(s) finished so far: ${names[*]}" >&2
    args+=(--table2 "$("$stage"/evaluate "${flags[@]}" "${files[@]}" --name "$profile-table2-so-far" --names "${names[@]}" | tail -n 1)")
  fi
fi

for step in table3 table4; do
  if folder=$(done_step $step); then args+=("--$step" "$folder"); fi
done
cams=()
for step in fig6-best fig6-proposed fig6-lungs; do
  if folder=$(done_step $step); then cams+=("$folder"); fi
done
[ ${#cams[@]} -eq 0 ] || args+=(--gradcam "${cams[@]}")

if [ ${#args[@]} -eq 0 ]; then
  echo "reproduce-so-far: no U-Net or classifier of profile '$profile' has finished yet under $run" >&2
  exit 1
fi
folder=$("$stage"/report "${flags[@]}" --name "$profile-so-far" "${args[@]}" | tail -n 1)
echo "$folder" > "$run/report-so-far.path"
echo "reproduce-so-far: $folder/report.html"
