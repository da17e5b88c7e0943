"""The native baselines: the same model and inputs in TensorFlow (Keras, ``tf.function``) and in
LiteRT (XNNPACK) on this machine, timed like the browser side (batch B, median of N)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def time_calls(call, n: int) -> list[float]:
    """Return ``n`` wall-clock timings of ``call()`` in milliseconds (after one warm-up call)."""
    call()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def native_tensorflow(model, shape: tuple[int, ...], batch: int, n: int, seed: int = 0
                      ) -> list[float]:
    """Time the Keras model compiled as one ``tf.function`` on random pixels."""
    import tensorflow as tf

    pixels = np.random.default_rng(seed).integers(0, 256, (batch, *shape)).astype(np.float32)
    x = tf.constant(pixels)
    forward = tf.function(lambda t: model(t, training=False), jit_compile=False)
    return time_calls(lambda: forward(x).numpy(), n)


def native_litert(path: Path, shape: tuple[int, ...], batch: int, n: int, threads: int = 2,
                  seed: int = 0) -> list[float]:
    """Time a TFLite file in LiteRT with ``threads`` threads; batch B is B calls (the export is
    pinned to batch 1, as in the browser)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    pixels = np.random.default_rng(seed).integers(0, 256, (1, *shape)).astype(np.float32)

    def call() -> None:
        for _ in range(batch):
            interpreter.set_tensor(input_index, pixels)
            interpreter.invoke()
            interpreter.get_tensor(output_index)

    return time_calls(call, n)
