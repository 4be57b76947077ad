"""Long fuzz run of the .ugc parser and decoder: prints outcomes by mutation and kind, writes JSON.

    python scripts/fuzz_ugc.py --cases 100000 --json /tmp/fuzz.json

Every case is a mutation (truncation, bit flips, length-field edits, random bytes, garbage
payloads with valid CRCs, header-field edits, splices) of one of the golden files, decoded with
the golden tiny model. Any exception that is not a UgicmError, and any case slower than
--timeout CPU seconds, is a failure; the run exits 1 if there was one.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import torch

from ugicm_codec.codec import Codec
from ugicm_codec.fuzzing import mutate, outcome

GOLDEN = Path(__file__).resolve().parents[1] / "formats" / "golden"


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    codec = Codec(weights=GOLDEN / "tiny", device="cpu")
    seeds = [p.read_bytes() for p in sorted(GOLDEN.glob("tiny-*.ugc"))]
    rng = random.Random(args.seed)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures = []
    # CPU time, not wall time: a loaded machine must not turn slow cases into false hangs.
    signal.signal(signal.SIGPROF, _alarm)
    start = time.time()
    for case in range(args.cases):
        kind, data = mutate(rng.choice(seeds), rng)
        signal.setitimer(signal.ITIMER_PROF, args.timeout)
        try:
            result = outcome(codec, data)
        except Hang:
            result = "HANG"
            failures.append({"case": case, "mutation": kind, "error": "hang", "hex": data[:256].hex()})
        except Exception as e:  # a crash: exactly what the run looks for
            result = "CRASH"
            failures.append(
                {
                    "case": case,
                    "mutation": kind,
                    "error": repr(e),
                    "trace": traceback.format_exc(limit=3),
                    "hex": data[:256].hex(),
                }
            )
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        counts[kind][result] += 1
        if (case + 1) % 10_000 == 0:
            print(
                f"{case + 1} cases, {len(failures)} failures, {time.time() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.time() - start
    totals = collections.Counter()
    for c in counts.values():
        totals.update(c)
    print(
        f"{args.cases} cases in {elapsed:.0f} s; outcomes: "
        + ", ".join(f"{k} {v}" for k, v in totals.most_common())
    )
    for kind in sorted(counts):
        print(f"  {kind:13s} " + ", ".join(f"{k} {v}" for k, v in counts[kind].most_common()))
    print(f"crashes or hangs: {len(failures)}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cases": args.cases,
                    "seconds": round(elapsed, 1),
                    "seed": args.seed,
                    "outcomes": dict(totals),
                    "by_mutation": {k: dict(v) for k, v in counts.items()},
                    "failures": failures[:50],
                },
                indent=2,
            )
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
