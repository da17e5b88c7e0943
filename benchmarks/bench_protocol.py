"""What the connection limits (issue 17) cost a blob revalidation, in the HTTP protocol alone.

A 304 answered in the protocol (:mod:`browserml.server.revalidation`) is the server's hottest
request; the limits of :mod:`browserml.server.protocol` (head size, slow heads, connection cap)
add per-request bookkeeping to exactly that path. Measured here without sockets, so other
processes' load cannot swamp a sub-microsecond difference: one protocol object per class, fed the
same keep-alive revalidation request N times through ``data_received`` (httptools parses it, the
hook writes the 304 to a stub transport), CPU time of this thread per request, rounds shuffled,
the minimum over rounds reported (the run least disturbed by the rest of the machine).

``--baseline-src DIR`` adds a third side: the revalidation protocol of another source tree (e.g.
``git archive 9b4a212 src | tar -x -C /tmp/base``: main before the limits), imported as a separate
package, so "before" and "after" are compared in one process on the same requests.

Usage: ``.venv/bin/python benchmarks/bench_protocol.py [--rounds 40] [--requests 5000]
[--baseline-src DIR/src]``
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import random
import sys
import time
from pathlib import Path

from uvicorn.config import Config
from uvicorn.server import ServerState

from browserml.server.downloads import downloading_protocol
from browserml.server.protocol import Limits, guarded_protocol
from browserml.server.revalidation import revalidating_protocol

SHA = "a" * 64
REQUEST = (f"GET /v1/blobs/{SHA} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
           f"If-None-Match: \"{SHA}\"\r\n\r\n").encode()


class KnownBlobs:
    """The blob app's one question on this path: every blob is known."""

    def known(self, _sha256: str) -> bool:
        return True


class StubTransport:
    """Counts writes; never closes (keep-alive)."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, _data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)


def baseline_protocol(src: Path) -> type:
    """The revalidation protocol class of the ``browserml`` package under ``src``, imported as
    ``browserml_before`` beside this tree's (its modules import each other relatively)."""
    spec = importlib.util.spec_from_file_location(
        "browserml_before", src / "browserml" / "__init__.py",
        submodule_search_locations=[str(src / "browserml")])
    package = importlib.util.module_from_spec(spec)
    sys.modules["browserml_before"] = package
    spec.loader.exec_module(package)
    return importlib.import_module("browserml_before.server.revalidation").revalidating_protocol(
        KnownBlobs())


async def measure(rounds: int, requests: int, baseline_src: Path | None = None) -> dict[str, float]:
    config = Config(app=lambda *_: None, http="httptools", log_level="warning")
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Mon, 30 Nov 2026 23:00:00 GMT")]  # as uvicorn's tick sets
    classes = {
        "without limits": revalidating_protocol(KnownBlobs()),
        "with limits": revalidating_protocol(KnownBlobs(), None, guarded_protocol(Limits())),
        # What `browserml serve` runs: the sendfile downloads (.downloads) sit below the 304 hook.
        "as served": revalidating_protocol(KnownBlobs(), None, downloading_protocol(
            KnownBlobs(), None, guarded_protocol(Limits()))),
    }
    if baseline_src is not None:
        classes["before"] = baseline_protocol(baseline_src)
    best = dict.fromkeys(classes, float("inf"))
    for _ in range(rounds):
        order = list(classes.items())
        random.shuffle(order)
        for name, cls in order:
            protocol = cls(config=config, server_state=state, app_state={})
            transport = StubTransport()
            protocol.connection_made(transport)
            started = time.thread_time()
            for _ in range(requests):
                protocol.data_received(REQUEST)
            spent = time.thread_time() - started
            assert transport.writes == requests, (name, transport.writes)
            protocol.cycle = None  # the 9b4a212 stand-in cycle lacked what connection_lost sets
            protocol.connection_lost(None)
            best[name] = min(best[name], spent / requests * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="also measure this source tree's protocol (its src/ folder) as 'before'")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    best = asyncio.run(measure(args.rounds, args.requests, args.baseline_src))
    without, with_limits = best["without limits"], best["with limits"]
    print(f"1-min load average {load:.2f}; min of {args.rounds} shuffled rounds x {args.requests} requests")
    print(f"304 in the protocol: without limits {without:.2f} µs, with limits {with_limits:.2f} µs, "
          f"with/without {with_limits / without:.3f}x")
    print(f"as served (limits + sendfile downloads below the 304 hook): {best['as served']:.2f} µs, "
          f"/ with limits {best['as served'] / with_limits:.3f}x")
    if "before" in best:
        print(f"before (--baseline-src) {best['before']:.2f} µs: with limits / before "
              f"{with_limits / best['before']:.3f}x (CPU per 304; below 1 = cheaper now)")


if __name__ == "__main__":
    main()
