"""The floor: the bench model run by onnxruntime in-process, with no HTTP at all."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def rows_per_second(onnx_path: Path, x: np.ndarray, threads: int, seconds: float = 2.0) -> float:
    """Median rows/s of repeated runs of the whole of ``x`` on ``threads`` intra-op threads."""
    run = session(onnx_path, threads).run
    feed = {"inputs": np.ascontiguousarray(x, dtype=np.float32)}
    run(None, feed)
    times, stop = [], time.perf_counter() + seconds
    while time.perf_counter() < stop or len(times) < 3:
        started = time.perf_counter()
        run(None, feed)
        times.append(time.perf_counter() - started)
    return len(x) / float(np.median(times))


def single_row_us(onnx_path: Path, x: np.ndarray, seconds: float = 1.0) -> float:
    """Median microseconds of one single-row run."""
    run = session(onnx_path, 1).run
    feed = {"inputs": np.ascontiguousarray(x[:1], dtype=np.float32)}
    times, stop = [], time.perf_counter() + seconds
    while time.perf_counter() < stop:
        started = time.perf_counter()
        run(None, feed)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1e6
