"""``surrogate simulate`` with faults, for testing how ``surrogate loop`` handles a simulator
that fails on some rows:

    python bench/simulators/analytic.py [--function NAME] INPUT.csv

computes the function as ``surrogate simulate`` does, then

``SIM_FAIL_FRACTION``  share of the rows that fail, chosen by a hash of the row (so a row fails
                       every time): half of them get NaN outputs, half are left out of the
                       output, and the process then exits with status 3;
``SIM_SLEEP``          seconds per row (a slow simulator, to interrupt);
``SIM_LOG``            a file each call appends a line to: its parent's pid and its row count.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

import numpy as np

from training.cli.simulate import write_outputs
from training.data import load_table
from training.functions import FUNCTIONS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", default="borehole", choices=sorted(FUNCTIONS))
    parser.add_argument("input", nargs="?", default=os.environ.get("SURROGATE_INPUT"))
    args = parser.parse_args()
    fn = FUNCTIONS[args.function]
    names, outputs = [spec[0] for spec in fn.inputs], [spec[0] for spec in fn.outputs]
    X = load_table(args.input, names, [], for_training=False).X
    time.sleep(float(os.environ.get("SIM_SLEEP", "0")) * len(X))
    Y = np.asarray(fn(X), dtype=float).reshape(len(X), -1)
    share = float(os.environ.get("SIM_FAIL_FRACTION", "0"))
    draws = np.array([int(hashlib.sha256(repr(x.tolist()).encode()).hexdigest()[:8], 16) / 2**32
                      for x in X])  # fmt: skip
    Y[draws < share / 2] = np.nan
    keep = ~((draws >= share / 2) & (draws < share))
    write_outputs(os.environ["SURROGATE_OUTPUT"], names, outputs, X, Y, keep)
    log = os.environ.get("SIM_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as file:
            file.write(f"{os.getppid()} {len(X)}\n")
    return 0 if keep.all() else 3


if __name__ == "__main__":
    sys.exit(main())
