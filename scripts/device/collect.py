"""Copies what scripts/device/schedule.sh has made so far into OUT, within the device tool's limits
(16 MiB a file, 64 MiB in all): the furthest phase's model state only, transforms in float16 and
the entropy model exact (what the export keeps), the ablation as its difference from the L_sem
run, larger files in 15 MiB parts (`cat NAME.part-* > NAME` joins them), and every run's log.

    python scripts/device/collect.py OUT
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from ugicm_codec.weights import compact_state

RUNS = Path(os.environ.get("R", "/tmp/runs"))
PART = 15 * 2**20


def slim(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {"model": compact_state(state["model"]), "step": state["step"], "config": state["config"]}


def _save(obj: dict, path: Path, part: int = PART) -> None:
    torch.save(obj, path)
    if path.stat().st_size > part:
        subprocess.run(["split", "-b", str(part), str(path), f"{path}.part-"], check=True)
        path.unlink()


def main(out: Path, runs: Path = RUNS, part: int = PART) -> None:
    """Collect from the schedule's run directories ``runs`` into ``out`` (files over ``part`` bytes split)."""

    def save(obj: dict, path: Path) -> None:
        _save(obj, path, part)

    logs = [
        json.dumps(dict(json.loads(line), run=run)) + "\n"
        for run in ("s1", "decay", "s2h", "s2m", "s2n")
        if (runs / run / "log.jsonl").exists()
        for line in open(runs / run / "log.jsonl")
    ]
    (out / "logs.jsonl").write_text("".join(logs))
    if (runs / "s2m/last.pt").exists() and (runs / "s2n/last.pt").exists():
        machine, ablation = slim(runs / "s2m/last.pt"), slim(runs / "s2n/last.pt")
        ablation["model"] = {
            k: v for k, v in ablation["model"].items() if not torch.equal(v, machine["model"][k])
        }
        save(machine, out / "s2m.pt")
        save(ablation, out / "s2n-diff.pt")
    elif (runs / "s2h/last.pt").exists():
        save(slim(runs / "s2h/last.pt"), out / "s2h.pt")
    elif (runs / "STAGE1_DONE").exists():
        save(slim(runs / "decay/last.pt"), out / "decay.pt")
    elif (runs / "s1/last.pt").exists():
        save(slim(runs / "s1/last.pt"), out / "s1.pt")
    print("collected:", sorted(p.name for p in out.iterdir()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
