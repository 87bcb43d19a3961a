#!/usr/bin/env bash
# The engine against tuned PyTorch on this machine, in one run (make bench-peers). For ROUNDS rounds
# it runs each workload's engine process and then its PyTorch peer (../shared/peers, channels-last,
# jemalloc preloaded and checked), with a pause between runs, and prints a Markdown table of the
# medians, each side's run-to-run spread, and the ratios; the raw numbers go to OUT (JSON).
#
#   scripts/bench-peers.sh PEERS_PY PEERS_DIR ENGINE_BENCH [ROUNDS] [OUT]
#
# PEERS_STEPS=0 skips the step workloads; PEERS_EPOCHS=1 adds one real epoch of each training stage
# against bench/peers/epoch_torch.py (DATA: the data folder, default ../shared/data).
# PEERS_PY: a Python with torch, timm and segmentation-models-pytorch (a throw-away venv; never a
# project dependency). Run it on a quiet machine: under load PyTorch's OpenMP threads collapse and the
# ratios mean nothing.
set -euo pipefail
py=${1:?PEERS_PY}; peers=${2:?PEERS_DIR}; bench=${3:?ENGINE_BENCH}; rounds=${4:-3}; out=${5:-bench-peers.json}
threads=${BENCH_THREADS:-2}; pause=${BENCH_PAUSE:-5}
jemalloc=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2 2>/dev/null | head -n 1 || true)
[ -n "$jemalloc" ] || { echo "bench-peers: libjemalloc2 is not installed (apt-get install libjemalloc2): PyTorch would run untuned" >&2; exit 1; }
# ld.so only warns when a preload fails and runs on without it: check that it is really mapped.
loaded=$(LD_PRELOAD=$jemalloc "$py" -c "print(any('jemalloc' in l for l in open('/proc/self/maps')))" 2>&1)
[ "$loaded" = "True" ] || { echo "bench-peers: jemalloc did not preload into $py: $loaded" >&2; exit 1; }
for s in bench_cls_torch.py bench_seg_torch.py; do [ -f "$peers/$s" ] || { echo "bench-peers: no $peers/$s" >&2; exit 1; }; done
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
probe() {  # the machine probe, just before the run it is labelled with
  echo "{\"round\": $r, \"side\": \"probe\", \"label\": \"$1\", \"result\": $("$bench" --only machine_probe --threads "$threads")}" >> "$lines"
}
peer() {  # label, script args…
  local label=$1; shift
  sleep "$pause"
  probe "torch $label"
  echo "bench-peers: round $r, PyTorch $label…" >&2
  LD_PRELOAD=$jemalloc "$py" "$peers/$@" --channels-last 2>/dev/null | sed -n 's/^JSON /{"round": '"$r"', "side": "torch", "label": "'"$label"'", "result": /p' | sed 's/$/}/' >> "$lines"
}
engine() {  # workload
  sleep "$pause"
  probe "engine $1"
  echo "bench-peers: round $r, engine $1…" >&2
  echo "{\"round\": $r, \"side\": \"engine\", \"label\": \"$1\", \"result\": $("$bench" --only "$1" --threads "$threads" --steps 9)}" >> "$lines"
}
if [ "${PEERS_STEPS:-1}" = 1 ]; then
  for r in $(seq 1 "$rounds"); do
    engine classifier_train_256_b16; engine classifier_infer_256_b16; peer cls bench_cls_torch.py --iters 9
    engine unet_train_256_b8; peer seg256 bench_seg_torch.py --size 256 --batch 8 --iters 9
    engine unet_train_512_b4; peer seg512 bench_seg_torch.py --size 512 --batch 4 --iters 5
  done
fi
# PEERS_EPOCHS=1: one real epoch each (bench's segment_epoch_256 and classify_epoch_224 against
# bench/peers/epoch_torch.py on DATA, default ../shared/data), one round: about 25 minutes.
if [ "${PEERS_EPOCHS:-0}" = 1 ]; then
  data=${DATA:-../shared/data}
  here=$(cd "$(dirname "$0")/.." && pwd)
  r=1
  sleep "$pause"; probe "engine segment_epoch"; echo "bench-peers: engine segment_epoch_256…" >&2
  echo "{\"round\": 1, \"side\": \"engine\", \"label\": \"segment_epoch\", \"result\": $("$bench" --only segment_epoch_256 --threads "$threads" --data "$data")}" >> "$lines"
  sleep "$pause"; probe "torch segment_epoch"; echo "bench-peers: PyTorch segment epoch…" >&2
  LD_PRELOAD=$jemalloc "$py" "$here/bench/peers/epoch_torch.py" segment --data "$data" --peers "$peers" --threads "$threads" \
    | sed -n 's/^JSON /{"round": 1, "side": "torch", "label": "segment_epoch", "result": /p' | sed 's/$/}/' >> "$lines"
  sleep "$pause"; probe "engine classify_epoch"; echo "bench-peers: engine classify_epoch_224…" >&2
  echo "{\"round\": 1, \"side\": \"engine\", \"label\": \"classify_epoch\", \"result\": $("$bench" --only classify_epoch_224 --threads "$threads" --data "$data")}" >> "$lines"
  sleep "$pause"; probe "torch classify_epoch"; echo "bench-peers: PyTorch classify epoch…" >&2
  LD_PRELOAD=$jemalloc "$py" "$here/bench/peers/epoch_torch.py" classify --data "$data" --peers "$peers" --threads "$threads" \
    | sed -n 's/^JSON /{"round": 1, "side": "torch", "label": "classify_epoch", "result": /p' | sed 's/$/}/' >> "$lines"
fi
"$py" - "$lines" "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json.dump(runs, open(sys.argv[2], "w"), indent=1)
def series(side, label, key):
    return [r["result"][key] for r in runs if r["side"] == side and r["label"] == label]
rows = [("classifier train 256² b16", "classifier_train_256_b16", "cls", "train_img_s", "rss_train_mib"),
        ("classifier infer 256² b16", "classifier_infer_256_b16", "cls", "infer_img_s", "rss_infer_mib"),
        ("U-Net train 256² b8", "unet_train_256_b8", "seg256", "train_img_s", "rss_train_mib"),
        ("U-Net train 512² b4", "unet_train_512_b4", "seg512", "train_img_s", "rss_train_mib")]
print("| workload | engine img/s (rounds) | spread | PyTorch img/s (rounds) | spread | speed ratio | peak RSS engine / PyTorch GiB | RSS ratio |")
print("|---|---|---|---|---|---|---|---|")
for title, ours, theirs, speed, rss in rows:
    if not any(r["label"] == ours for r in runs):
        continue
    e, t = series("engine", ours, "imagesPerSecond"), series("torch", theirs, speed)
    er, tr = series("engine", ours, "peakRSSGiB"), [m / 1024 for m in series("torch", theirs, rss)]
    if not e or not t:
        print(f"| {title} | {e} | | {t} | | missing | | |"); continue
    spread = lambda v: f"{100 * (max(v) / min(v) - 1):.1f} %"
    me, mt, mer, mtr = statistics.median(e), statistics.median(t), statistics.median(er), statistics.median(tr)
    print(f"| {title} | {', '.join(f'{v:.2f}' for v in e)} | {spread(e)} | {', '.join(f'{v:.2f}' for v in t)} | {spread(t)} "
          f"| {me / mt:.2f}× | {mer:.2f} / {mtr:.2f} | {mer / mtr:.2f} |")
epochs = [(title, label) for title, label in [("segment train, one epoch (lungs, 256² b4)", "segment_epoch"),
                                             ("classify-train, one epoch (kermany224, 224² b16)", "classify_epoch")]
          if series("engine", label, "wallSeconds") and series("torch", label, "wallSeconds")]
if epochs:
    print()
    print("| one epoch | engine wall s (in steps, validation) | PyTorch wall s (in steps, waiting for data, validation) | wall ratio | epoch ratio | outside steps engine / PyTorch | peak RSS engine / PyTorch GiB |")
    print("|---|---|---|---|---|---|---|")
    for title, label in epochs:
        e = next(r["result"] for r in runs if r["side"] == "engine" and r["label"] == label)
        t = next(r["result"] for r in runs if r["side"] == "torch" and r["label"] == label)
        print(f"| {title} | {e['wallSeconds']:.1f} ({e['stepSeconds']:.1f}, {e['validationSeconds']:.1f}) "
              f"| {t['wallSeconds']:.1f} ({t['stepSeconds']:.1f}, {t['dataWaitSeconds']:.1f}, {t['validationSeconds']:.1f}) "
              f"| {t['wallSeconds'] / e['wallSeconds']:.2f}× | {t['epochSeconds'] / e['epochSeconds']:.2f}× "
              f"| {100 * e['outsideStepsShare']:.1f} % / {100 * t['outsideStepsShare']:.1f} % "
              f"| {e['peakRSSGiB']:.2f} / {t['peakRSSGiB']:.2f} (+{t['workersPeakRSSGiB']:.2f} workers) |")
probes = [r["result"] for r in runs if r["side"] == "probe"]
if probes:
    spread = lambda key: 100 * (max(p[key] for p in probes) / min(p[key] for p in probes) - 1)
    compute, memory = spread("computeSeconds"), spread("memorySeconds")
    print()
    print(f"Machine probe before each of the {len(probes)} runs (bench --only machine_probe): compute {compute:.1f} %, "
          f"memory {memory:.1f} % spread (slowest over fastest).")
    if max(compute, memory) > 5:
        print("The machine itself moved by more than 5 % during this run: the ratios above carry that much noise.")
PY
