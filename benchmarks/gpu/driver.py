"""GPU-machine driver (issue 18): serves the staged static tree (SDK, vendored runtimes, models)
with COOP/COEP and runs bench.html's scenarios in headless Chromium on the NVIDIA GPU, through
gpu-chromium's stdlib-only DevTools client. One JSON line per visit on stdout.

    eval "$(bash .gpu/bin/gpu-chromium.sh env)"
    python3 driver.py --web "$GPU_EXTRA/web" --model mnv2 --candidates tfjs/webgl/uint8,... \
        [--soak tfjs/webgl/uint8 --soak-n 10000] [--auto-visits 3]

Each `auto` visit runs in a fresh browser profile (a cold visit: nothing cached, nothing
remembered) except the last, which reuses the profile of the one before (a repeat visit). Forced
candidates share one browser (their figures are steady-state; first prediction = warm-up).
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.environ.get("GPU_BIN", ".gpu/bin"))
import cdp
import serve

RESULT = "window.result"


def smi() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=memory.used,utilization.gpu,clocks.sm", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e:
        return f"nvidia-smi: {e}"


def visit(b, base, query, timeout):
    t0 = time.time()
    try:
        value = b.run(f"{base}/bench/bench.html?{query}", RESULT, timeout=timeout)
    except Exception as e:
        value = {"ok": False, "error": str(e)}
    value["wall_s"] = round(time.time() - t0, 2)
    value["query"] = query
    value["smi"] = smi()
    bad = [c for c in b.console if "exception" in c or "error" in c.lower()]
    if bad:
        value["console"] = bad[-8:]
    print(json.dumps(value), flush=True)
    return value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--web", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--candidates", default="")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--auto-visits", type=int, default=2)
    ap.add_argument("--soak", default="")
    ap.add_argument("--soak-n", type=int, default=10000)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--parts", default="auto,forced,soak")
    args = ap.parse_args()
    parts = args.parts.split(",")
    server, base = serve.start([args.web])
    try:
        if "auto" in parts:
            for i in range(args.auto_visits):
                b = cdp.Chromium(log=f"/tmp/chrome-auto-{args.model}-{i}.log")
                try:
                    if i == 0:
                        print(json.dumps({"gpu": b.gpu, "model": args.model}), flush=True)
                    visit(b, base, f"s=auto&model={args.model}&n={args.n}", args.timeout)
                    if i == args.auto_visits - 1:
                        visit(b, base, f"s=auto&model={args.model}&n={args.n}&visit=repeat", args.timeout)
                finally:
                    b.close()
        if "forced" in parts and args.candidates:
            with cdp.Chromium(log=f"/tmp/chrome-forced-{args.model}.log") as b:
                for c in args.candidates.split(","):
                    visit(b, base, f"s=forced&model={args.model}&c={c}&n={args.n}", args.timeout)
        if "soak" in parts and args.soak:
            with cdp.Chromium(log=f"/tmp/chrome-soak-{args.model}.log") as b:
                query = f"s=soak&model={args.model}&c={args.soak}&n={args.soak_n}"
                visit(b, base, query, max(args.timeout, 590))
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
