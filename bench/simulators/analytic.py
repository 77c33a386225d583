"""A simulator command for ``surrogate loop``: one of the analytic functions of
``training.functions`` (borehole by default), read and written the way the loop asks.

    python bench/simulators/analytic.py [--function NAME] INPUT.csv

reads the input rows from the CSV (also ``$SURROGATE_INPUT``) and writes them with the output
columns to ``$SURROGATE_OUTPUT``. For testing the loop's handling of a failing simulator:

``SIM_FAIL_FRACTION``  share of the rows that fail, chosen by a hash of the row (so a row fails
                       every time): half of them get NaN outputs, half are left out of the
                       output, and the process then exits with status 3;
``SIM_SLEEP``          seconds per row (a slow simulator, to interrupt);
``SIM_LOG``            a file each call appends a line to: its parent's pid and its row count.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import sys
import time

import numpy as np

from training.functions import FUNCTIONS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", default="borehole", choices=sorted(FUNCTIONS))
    parser.add_argument("input", nargs="?", default=os.environ.get("SURROGATE_INPUT"))
    args = parser.parse_args()
    fn = FUNCTIONS[args.function]
    inputs = [spec[0] for spec in fn.inputs]
    outputs = [spec[0] for spec in fn.outputs]
    with open(args.input, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    X = np.array([[float(row[name]) for name in inputs] for row in rows]).reshape(-1, len(inputs))
    time.sleep(float(os.environ.get("SIM_SLEEP", "0")) * len(rows))
    Y = np.asarray(fn(X), dtype=float).reshape(len(X), -1)
    share = float(os.environ.get("SIM_FAIL_FRACTION", "0"))
    dropped = False
    with open(os.environ["SURROGATE_OUTPUT"], "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(inputs + outputs)
        for row, x, y in zip(rows, X, Y, strict=True):
            draw = int(hashlib.sha256(repr(x.tolist()).encode()).hexdigest()[:8], 16) / 2**32
            if draw < share / 2:
                y = np.full_like(y, math.nan)
            elif draw < share:
                dropped = True
                continue
            writer.writerow([row[name] for name in inputs] + [repr(float(v)) for v in y])
    log = os.environ.get("SIM_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as file:
            file.write(f"{os.getppid()} {len(rows)}\n")
    return 3 if dropped else 0


if __name__ == "__main__":
    sys.exit(main())
