"""``python -m bench.gradients``: the cost of one full-batch gradient per hidden activation, with
glibc's default heap and with the roomy heap fits run in (``training.heap``), in one run.

    python -m bench.gradients [--rows 750] [--hidden 64,64] [--inputs 7] [--repeats 7]

The gradient is what every L-BFGS iteration of a fit pays (750 rows: a fold of a 1000-row
table). Times are the best of ``--repeats`` interleaved rounds of 50 gradients, one BLAS thread
as in a fit; the ratio column is the roomy heap's time over the default's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from training.activations import get_activation
from training.heap import roomy_heap
from training.network import Network, Problem

ACTIVATIONS = ("tanh", "silu", "sin", "gelu", "relu")
CALLS = 50


def problem(activation: str, rows: int, inputs: int, hidden: Sequence[int]) -> Problem:
    sizes = (inputs, *hidden, 1)
    net = Network(sizes, [get_activation(activation)] * len(hidden)
                  + [get_activation("identity")])
    rng = np.random.RandomState(0)
    return Problem(net, net.initial(rng), rng.rand(rows, inputs), rng.rand(rows, 1), None, None,
                   0.01)


def seconds(p: Problem) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        p.full_loss_grad()
    return (time.perf_counter() - start) / CALLS


def measure(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """activation -> (default heap, roomy heap) seconds per gradient."""
    problems = {a: problem(a, args.rows, args.inputs, args.hidden) for a in args.activations}
    best = {a: [np.inf, np.inf] for a in problems}
    with threadpool_limits(1):
        for _ in range(args.repeats):
            for name, p in problems.items():
                best[name][0] = min(best[name][0], seconds(p))
                with roomy_heap() as roomy:
                    best[name][1] = min(best[name][1], seconds(p))
    if not roomy:
        print("this C library has no mallopt: both columns use its default heap")
    return {name: (a, b) for name, (a, b) in best.items()}


def table(results: dict[str, tuple[float, float]], args: argparse.Namespace) -> str:
    lines = [f"full-batch gradient, {args.rows} rows, {args.inputs}-"
             f"{'-'.join(map(str, args.hidden))}-1, one thread (ms, best of {args.repeats})",
             "",
             "| activation | default heap | roomy heap | ratio |",
             "|---|---:|---:|---:|"]
    for name, (default, roomy) in results.items():
        lines.append(f"| {name} | {default * 1e3:.2f} | {roomy * 1e3:.2f} | "
                     f"{roomy / default:.2f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gradients", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=750)
    parser.add_argument("--inputs", type=int, default=7)
    parser.add_argument("--hidden", type=lambda s: tuple(int(v) for v in s.split(",")),
                        default=(64, 64))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--activations", type=lambda s: tuple(s.split(",")),
                        default=ACTIVATIONS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(table(measure(args), args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
