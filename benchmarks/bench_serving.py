"""Serving benchmark (issue 3): our blob endpoint vs nginx on the same 4 MiB shard, side by side.

Target: at least 0.5x nginx's requests/s for full 200 downloads and for 304 revalidations
(``If-None-Match``). Both servers get one worker process on 127.0.0.1 and serve the very same file
(our blob store's copy); nginx gets the same Cache-Control/CORP headers, sendfile on, access log
off (ours runs as ``browserml serve`` does: access log off). ``wrk`` drives each for a bounded
duration; rounds alternate ours/nginx so background load hits both alike, and the median round is
reported.

    .venv/bin/python benchmarks/bench_serving.py [--duration 3] [--rounds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from browserml.bench.synthetic import SYNTHETIC_CHECK
from browserml.registry import Registry
from browserml.server.run import free_port
from browserml.settings import Settings
from browserml.variants import Build, InputSpec, Variant, describe_file, write_build

NGINX = "/usr/sbin/nginx"
SHARD_SHAPE = [1024, 1024]  # float32: exactly 4 MiB

NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{
      add_header Cache-Control "public, max-age=31536000, immutable";
      add_header Cross-Origin-Resource-Policy cross-origin;
    }}
  }}
}}
"""


def write_build_with_shard(root: Path) -> Path:
    """Write a one-variant TF.js build whose single weight is a 4 MiB float32 shard."""
    folder = root / "float32"
    folder.mkdir(parents=True)
    kernel = np.random.default_rng(0).standard_normal(SHARD_SHAPE).astype(np.float32)
    (folder / "group1-shard1of1.bin").write_bytes(kernel.tobytes())
    weights = [{"name": "dense/kernel", "shape": SHARD_SHAPE, "dtype": "float32"}]
    model = {"format": "layers-model", "modelTopology": {},
             "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": weights}]}
    (folder / "model.json").write_text(json.dumps(model))
    files = [describe_file(root, folder / "model.json", "model"),
             describe_file(root, folder / "group1-shard1of1.bin", "weights")]
    build = Build(name="bench", source="benchmark", labels=["a"],
                  input=InputSpec(height=1, width=1024, channels=1),
                  variants=[Variant(name="float32", weight_dtype="float32", files=files,
                                    bytes=sum(f.bytes for f in files), check=SYNTHETIC_CHECK)])
    write_build(root, build)
    return root


def wait_http(url: str, timeout_s: float = 60) -> None:
    """Poll ``url`` until it answers (any status) or raise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout_s} s")


def start_ours(data_dir: Path, port: int, src: Path | None = None) -> subprocess.Popen:
    """Start ``browserml serve`` (uvicorn, one worker) on the data dir; ``src`` runs the package
    from another source tree (``--baseline-src``: e.g. main before a change)."""
    command = [sys.executable, "-m", "browserml.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(data_dir)]
    env = {**os.environ, "PYTHONPATH": str(src)} if src is not None else None
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def start_nginx(tmp: Path, root: Path, port: int) -> subprocess.Popen:
    """Start nginx with one worker serving ``root`` on the port."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, port=port, root=root))
    return subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (from /proc): per request, a cost that moves
    much less with other processes' load than requests/s does."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_requests(output: str) -> int:
    return int(re.search(r"(\d+) requests in", output).group(1))


def wrk(url: str, duration: float, connections: int, headers: dict[str, str]) -> float:
    """Run wrk against ``url`` and return requests/s; raise when any response was not 2xx/3xx."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed against {url}: {done.stderr.strip() or done.stdout}")
    output = done.stdout
    if "Non-2xx or 3xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors against {url}:\n{output}")
    wrk.last_requests = wrk_requests(output)  # type: ignore[attr-defined]
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def check_server(url: str, size: int) -> str:
    """Check the server answers the full file and a 304 for its ETag; return the ETag."""
    full = httpx.get(url, headers={"Accept-Encoding": "identity"})
    assert full.status_code == 200 and len(full.content) == size, (url, full.status_code)
    etag = full.headers["etag"]
    revalidated = httpx.get(url, headers={"If-None-Match": etag})
    assert revalidated.status_code == 304, (url, revalidated.status_code)
    return etag


def bench(duration: float, rounds: int, connections: int, baseline_src: Path | None = None) -> dict:
    """Publish the shard, start both servers (and ours from ``baseline_src`` as "before", when
    given), run wrk interleaved; return every run's requests/s."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    processes = []
    try:
        settings = Settings(data_dir=tmp / "data")
        with Registry(settings) as registry:
            registry.publish(write_build_with_shard(tmp / "build"), "bench", channel="stable")
            entry = registry.manifest("bench")["variants"][0]["files"][1]
            blob = registry.blobs.path(entry["sha256"])
        ours_port, nginx_port = free_port(), free_port()
        processes.append(start_ours(settings.data_dir, ours_port))
        processes.append(start_nginx(tmp, registry.blobs.root, nginx_port))
        pids = {"ours": processes[0].pid}
        urls = {
            "ours": f"http://127.0.0.1:{ours_port}/v1/blobs/{entry['sha256']}",
            "nginx": f"http://127.0.0.1:{nginx_port}/{blob.relative_to(registry.blobs.root)}",
        }
        if baseline_src is not None:
            before_port = free_port()
            processes.append(start_ours(settings.data_dir, before_port, baseline_src))
            pids["before"] = processes[-1].pid
            urls["before"] = f"http://127.0.0.1:{before_port}/v1/blobs/{entry['sha256']}"
        etags = {}
        for name, url in urls.items():
            wait_http(url)
            etags[name] = check_server(url, entry["bytes"])
        results: dict[str, dict[str, list[float]]] = {}
        cpu: dict[str, dict[str, list[float]]] = {}  # server CPU µs per request (ours, before)
        for scenario in ("200 full GET", "304 If-None-Match"):
            results[scenario] = {name: [] for name in urls}
            cpu[scenario] = {name: [] for name in pids}
            for round_ in range(rounds):
                order = list(urls.items())
                for name, url in order if round_ % 2 == 0 else order[::-1]:  # ABBA: no order bias
                    headers = {"If-None-Match": etags[name]} if scenario.startswith("304") else {}
                    spent = cpu_seconds(pids[name]) if name in pids else 0.0
                    rps = wrk(url, duration, connections, headers)
                    results[scenario][name].append(rps)
                    if name in pids:
                        spent = cpu_seconds(pids[name]) - spent
                        cpu[scenario][name].append(spent * 1e6 / max(1, wrk.last_requests))
        return {"bytes": entry["bytes"], "results": results, "cpu_us_per_request": cpu}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="Seconds per wrk run.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved runs per server.")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="Also run ours from this source tree (its src/ folder), interleaved, "
                        "and print ours/before: a change's cost measured in one run.")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    report = bench(args.duration, args.rounds, args.connections, args.baseline_src)
    print(f"cpus: {os.cpu_count()}, 1-min load average before/after: "
          f"{load_before:.2f}/{os.getloadavg()[0]:.2f}")
    print(f"shard: {report['bytes']:,} bytes; wrk -t1 -c{args.connections} "
          f"-d{args.duration:g}s, median of {args.rounds} interleaved rounds; one worker each")
    extra = f" {'before req/s':>13} {'ours/before':>12}" if args.baseline_src else ""
    print(f"{'scenario':<20} {'ours req/s':>12} {'nginx req/s':>12} {'ours/nginx':>11}{extra}")
    for scenario, runs in report["results"].items():
        ours, nginx = statistics.median(runs["ours"]), statistics.median(runs["nginx"])
        line = f"{scenario:<20} {ours:>12,.0f} {nginx:>12,.0f} {ours / nginx:>10.2f}x"
        if "before" in runs:
            before = statistics.median(runs["before"])
            line += f" {before:>13,.0f} {ours / before:>11.3f}x"
        print(line)
    if args.baseline_src:
        print("server CPU per request (µs; median):")
        for scenario, runs in report["cpu_us_per_request"].items():
            ours, before = statistics.median(runs["ours"]), statistics.median(runs["before"])
            print(f"  {scenario:<20} ours {ours:8.1f}  before {before:8.1f}  "
                  f"ours/before {ours / before:.3f}x")


if __name__ == "__main__":
    main()
