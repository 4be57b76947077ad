#!/bin/bash
# One call of the device tool (carry .devcarry and .whl): installs the wheels and starts
# scripts/device/schedule.sh detached on the first call, then waits up to WAIT s and collects what
# exists into $OUT. Call again within the machine's warm window to wait on; a cold machine starts
# over.
[ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:/tmp/repo
if [ ! -d /tmp/repo ]; then  # a private copy: the next call re-sends the working tree
  mkdir -p /tmp/repo && cp -r ugicm_codec configs scripts .devcarry /tmp/repo/
  (cd /tmp/repo && setsid nohup bash scripts/device/schedule.sh > /tmp/schedule.log 2>&1 < /dev/null &)
fi
END=$(( $(date +%s) + ${WAIT:-540} ))
while [ "$(date +%s)" -lt $END ] && [ ! -f /tmp/runs/DONE ]; do sleep 10; done
cat /tmp/schedule.log
for f in /tmp/runs/*/log.jsonl; do echo "$f"; grep -h '"val"' "$f" | tail -n 1; tail -n 1 "$f"; done
grep -h -A3 Traceback /tmp/runs/*/out.log | head -20
cd /tmp/repo && python3 scripts/device/collect.py "$OUT"
