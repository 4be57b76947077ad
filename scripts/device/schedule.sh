#!/bin/bash
# The whole training schedule on a lent GPU machine, by wall time, from a packed model state
# (scripts/pack_for_device.py): stage 1 for T1 s, the lr/10 decay for TD s (a step count measured
# from stage 1's speed), stage-2 human sessions for TH s (0 skips them), then stage-2 machine
# sessions with L_sem for TM s and without it to the same step. Run directories go under R;
# R/STAGE1_DONE and R/DONE mark progress for scripts/device/collect.py.
#
# The defaults fit 15 minutes of device time, the machine's start and the transfers included: one
# call of call.sh (WAIT=540) runs it whole, about 500 s with the four trainer starts (each some
# 20 s: imports, CUDA, the images into memory). TH is 0 by default: stage 1 trains the decoder on
# β=0 MSE already, and the minutes buy more stage-1 steps instead. The phases that made the
# shipped weights, with the settings each used, are in docs/training.md.
#
# ARCH defaults to the shipped architecture, so stage 1 trains the checkerboard context jointly
# with the transforms (the CPU fit with frozen transforms finds little: docs/training.md). Stage 1
# tries bf16 autocast first (MP=false skips it); if its first CHECK s skip more than a fifth of
# their steps it restarts in float32.
set -f  # train=[...] must not glob
T1=${T1:-240}; TD=${TD:-60}; TH=${TH:-0}; TM=${TM:-100}; CHECK=${CHECK:-60}
R=${R:-/tmp/runs}; mkdir -p $R/{s1,decay,s2h,s2m,s2n}
export PYTHONUNBUFFERED=1
C="configs/gpu.toml train=[\".devcarry/train\"] val=.devcarry/val"
ARCH=${ARCH:-ugicm-hpacg-128-192-r10}; MP=${MP:-true}
tr() { python3 -m ugicm_codec.training $C arch=$ARCH mixed_precision=$MP $EXTRA "$@"; }
stop() { pkill -TERM -f "run_dir=$R/$1 "; wait; }  # the trainer saves on SIGTERM
step() { python3 -c "import torch; print(torch.load('$1', map_location='cpu', weights_only=True)['step'])"; }
speed() { python3 -c "
import json; r=[json.loads(l) for l in open('$1') if '\"train\"' in l]; r=r[2:] or r
print(sum(x['sec_per_step'] for x in r) / len(r))"; }
steps_in() { python3 -c "print(max(100, int($1 / ($2)) // 100 * 100))"; }

stage1() { tr run_dir=$R/s1 init=.devcarry/model.pt stage1_steps=100000000 stage2_steps=0 >> $R/s1/out.log 2>&1 & }
healthy() {  # a run that skips most steps is not worth the machine's time
  python3 -c "
import json; r=[json.loads(l) for l in open('$R/s1/log.jsonl') if '\"train\"' in l][-1]
print('check', r); raise SystemExit(r.get('skipped', 1) > 0.2)"; }
stage1; sleep $CHECK; SPENT=$CHECK
if [ "$MP" != false ] && ! healthy; then
  stop s1; echo "bf16 unhealthy: stage 1 restarts in float32"; mv $R/s1 $R/s1-bf16; mkdir $R/s1
  MP=false; stage1; sleep $CHECK; SPENT=$((2 * CHECK))
fi
healthy || { stop s1; echo FAILED; touch $R/DONE; exit 1; }
sleep $((T1 > SPENT ? T1 - SPENT : 0)); stop s1
S0=$(step $R/s1/last.pt); S1=$((S0 + $(steps_in $TD "$(speed $R/s1/log.jsonl)")))
echo "stage 1 ended at $S0; decay to $S1" | tee $R/plan.txt
cp $R/s1/last.pt $R/decay/last.pt  # resumed with its optimizer state
tr run_dir=$R/decay "lr_milestones=[$S0]" stage1_steps=$S1 stage2_steps=0 > $R/decay/out.log 2>&1
touch $R/STAGE1_DONE

S2=$R/decay/last.pt
if [ "$TH" -gt 0 ]; then
  tr run_dir=$R/s2h init=$S2 stage1_steps=$S1 stage2_steps=100000000 \
    stage2_sessions=human > $R/s2h/out.log 2>&1 &
  sleep $TH; stop s2h; S2=$R/s2h/last.pt
  echo "human sessions ended at $(step $S2)" | tee -a $R/plan.txt
fi

# The L_sem run by wall time, then the ablation to exactly its step (a fair comparison). By wall
# time, not a step count predicted from a short probe: a probe's few log lines are mostly start-up,
# and a prediction from them undershoots several-fold.
machine() { tr run_dir=$R/$1 init=$S2 stage1_steps=$S1 stage2_steps=$2 \
  stage2_sessions=machine semantic=$3 >> $R/$1/out.log 2>&1; }
machine s2m 100000000 true & sleep $TM; stop s2m
N=$(( $(step $R/s2m/last.pt) - S1 ))
machine s2n $N false  # about 7x faster on an H100: no teacher, no crops
echo "machine sessions ended at $(step $R/s2m/last.pt) / $(step $R/s2n/last.pt)" | tee -a $R/plan.txt
touch $R/DONE
