"""Checks that two sets of weights decode β=0 (the human decode) bit for bit alike.

    python lab/same_human_decode.py ~/.cache/ugicm/exports/r10 weights

True when every tensor the β=0 decode can use is identical in both, i.e. they differ only in what
``UGICM.machine_only_parameter_names()`` lists (an anchored PCDM's embedding, bias-projection
weights and machine adapters). Stage-2 machine sessions move nothing else, so their human-decode
figures carry over from the weights they started from; this is the check that they may. Exit 0
when they do, 1 when not (or when the two do not differ at all, which is a mistake of paths).
"""

from __future__ import annotations

import argparse

from safetensors.torch import load_file

from ugicm_codec.models import build_model
from ugicm_codec.weights import locate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", help="weights file or directory with a manifest")
    parser.add_argument("b")
    args = parser.parse_args()
    a, b = locate(args.a), locate(args.b)
    if a.name != b.name:
        raise SystemExit(f"different architectures: {a.name} and {b.name}")
    ta, tb = load_file(a.path), load_file(b.path)
    if ta.keys() != tb.keys():
        raise SystemExit("different tensor sets")
    machine_only = build_model(a.name).machine_only_parameter_names()
    differ = [k for k in ta if not (ta[k].dtype == tb[k].dtype and ta[k].equal(tb[k]))]
    shared = [k for k in differ if k not in machine_only]
    print(
        f"{len(ta)} tensors; {len(differ)} differ, {len(shared)} of them used by the human decode"
        + (f": {', '.join(shared[:5])}" if shared else "")
    )
    raise SystemExit(1 if shared or not differ else 0)


if __name__ == "__main__":
    main()
