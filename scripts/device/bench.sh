#!/bin/bash
# The speed issue's GPU measurement, one call of the device tool (carry .whl, from wheels.sh):
# installs the wheels, then times ugicm's human and machine decodes on the CPU and on CUDA, one
# file at a time and as 64-file batches (Codec.decode_batch: tiles of one shape stacked, the next
# batch parsed on the CPU beside the GPU's synthesis), into $OUT/bench-cuda.{json,md}. The image
# is kodim01 where ../shared is there, else a synthetic 768x512 one. About two minutes.
[ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv || echo "no nvidia-smi"
python3 -c 'from ugicm_codec.cli import main; main()' bench --codecs ugicm,ugicm-machine \
  --repeat 3 --batch 64 --json "$OUT/bench-cuda.json" --markdown "$OUT/bench-cuda.md"
cat "$OUT/bench-cuda.md"
