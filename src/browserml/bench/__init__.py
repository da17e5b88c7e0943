"""Benchmarks: every engine x backend x variant in real headless Chromium, beside native
TensorFlow and native LiteRT on the same machine, in one run."""
