#!/bin/bash
# Finishes a stage-1 run into shippable weights: the phases that made the shipped model.
#
#   bash lab/finish_schedule.sh ~/.cache/ugicm/runs/main10/last.pt
#
#   1. decay        stage 1 at lr/10 for DECAY steps                              (2 threads)
#   2. s2-human     grown to ARCH (anchored PCDM); stage 2, human sessions only (MSE at beta=0
#                   on the whole decoder), HUMAN steps                            (2 threads)
#   3. s2-machine, s2-machine-nosem
#                   stage 2, machine sessions only, from s2-human, MACHINE steps: L_sem at beta=1
#                   and its ablation (MSE at beta=1), side by side. They move only what the beta=0
#                   decode does not use, so both keep every other weight bit for bit (1 thread each)
#   4. exports      $EXPORTS/final and $EXPORTS/final-nosem (scripts/export_weights.py)
#
# Each phase resumes from its run directory, so re-running after an interruption goes on where it
# stopped; the starting step is recorded in decay/start.txt. Run directories go under RUNS.
set -e
SOURCE=${1:?usage: finish_schedule.sh STAGE1_CHECKPOINT}
RUNS=${RUNS:-$HOME/.cache/ugicm/runs/finish}; EXPORTS=${EXPORTS:-$HOME/.cache/ugicm/exports}
DECAY=${DECAY:-1500}; HUMAN=${HUMAN:-1500}; MACHINE=${MACHINE:-4600}
ARCH=${ARCH:-ugicm-hpa-128-192-r10}; CONFIG=${CONFIG:-configs/default.toml}
cd "$(dirname "$0")/.."
step() { python3 -c "import torch; print(torch.load('$1', map_location='cpu', weights_only=True)['step'])"; }
train() { nice -n 5 python3 -m ugicm_codec.training "$CONFIG" "$@"; }
mkdir -p "$RUNS"/{decay,s2-human,s2-machine,s2-machine-nosem}
[ -f "$RUNS/decay/start.txt" ] || { step "$SOURCE" > "$RUNS/decay/start.txt"; cp "$SOURCE" "$RUNS/decay/last.pt"; }
S0=$(cat "$RUNS/decay/start.txt"); S1=$((S0 + DECAY)); S2=$((S1 + HUMAN))
echo "decay $S0 -> $S1, human $S1 -> $S2, machine $S2 -> $((S2 + MACHINE))"
train run_dir="$RUNS/decay" "lr_milestones=[$S0]" stage1_steps=$S1 stage2_steps=0 >> "$RUNS/decay/stdout.log" 2>&1
train run_dir="$RUNS/s2-human" arch=$ARCH init="$RUNS/decay/last.pt" stage1_steps=$S1 \
  stage2_steps=$HUMAN stage2_sessions=human >> "$RUNS/s2-human/stdout.log" 2>&1
pids=()
for run in s2-machine:true s2-machine-nosem:false; do
  train run_dir="$RUNS/${run%:*}" arch=$ARCH init="$RUNS/s2-human/last.pt" stage1_steps=$S1 \
    stage2_steps=$((HUMAN + MACHINE)) stage2_sessions=machine semantic=${run#*:} threads=1 \
    >> "$RUNS/${run%:*}/stdout.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done   # a failed run stops the script (set -e)
python3 scripts/export_weights.py "$RUNS/s2-machine/last.pt" --out "$EXPORTS/final"
python3 scripts/export_weights.py "$RUNS/s2-machine-nosem/last.pt" --out "$EXPORTS/final-nosem"
