"""nginx, the one place that knows its configuration language: the static server block that
serves an export like ``browserml serve`` does, the load balancer in front of several instances,
and a runner that starts Debian's nginx unprivileged in a folder (tests and benchmarks).

Every header value comes from the server's own constants (:data:`.server.blobs.BLOB_HEADERS`,
:data:`.server.headers.ISOLATION_HEADERS`, ``settings.manifest_max_age``) and every content type
from the ``mimetypes`` table Starlette uses, so nginx and ``browserml serve`` cannot drift apart;
``tests/test_contract.py`` runs one suite against both.

Choices the server makes per request and nginx must be told:

* **Content coding** (``/v1/blobs/<sha>``): the server sends the smallest accepted precompressed
  copy, and identity for a Range request (ranges address the identity bytes the manifest sizes
  describe). Here two ``map`` s read ``Range`` and ``Accept-Encoding``, ``-f`` tests find which
  copies exist, and an internal rewrite serves the ``.br``/``.gz`` file with its
  ``Content-Encoding``. (Export keeps a ``.br`` only when it is smaller than the ``.gz``, so
  preferring br picks the smallest, as the server does.)
* **CORS**: the server echoes an allowlisted ``Origin`` (``settings.cors_origins``); a ``map``
  does the same.
* ETags are nginx's own (strong, mtime-size) rather than the server's hashes: clients only echo
  them back, and If-None-Match / 304 works the same way.
"""

from __future__ import annotations

import mimetypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import BrowserMLError
from .server import pages as _pages  # noqa: F401  (registers the .js/.wasm types the server sends)
from .server.blobs import BLOB_HEADERS
from .server.headers import ISOLATION_HEADERS
from .settings import Settings

EXPOSE_HEADERS = "ETag, Content-Length, Content-Encoding, Content-Range"
DOCUMENT_LOCATION = r"^/v1/models/[a-z0-9-]{1,64}/channels/[a-z0-9-]{1,64}\.json$"
BLOB_LOCATION = r"^/v1/blobs/([0-9a-f]{64})$"


class NginxError(BrowserMLError):
    """nginx is missing, refuses its configuration, or does not start."""


# ------------------------------------------------------------------ headers per kind of path


def isolation_headers() -> dict[str, str]:
    """The headers every non-blob response carries (COOP/COEP/CORP same-origin/nosniff)."""
    return {k.decode(): v.decode() for k, v in ISOLATION_HEADERS}


def blob_headers() -> dict[str, str]:
    """A blob's headers besides type, ETag and coding: immutable, embeddable cross-origin."""
    return dict(BLOB_HEADERS)


def document_headers(settings: Settings) -> dict[str, str]:
    """A channel document's headers: the manifest max-age, varying by Origin (CORS)."""
    return {"cache-control": f"public, max-age={settings.manifest_max_age}", "vary": "Origin",
            **isolation_headers()}


def content_type(path: str) -> str:
    """The Content-Type ``browserml serve`` sends for a file name (Starlette: ``mimetypes``,
    ``text/plain`` when unknown, ``; charset=utf-8`` on ``text/*``)."""
    kind = mimetypes.guess_type(path)[0] or "text/plain"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") else kind


def object_headers(key: str, settings: Settings) -> dict[str, str]:
    """Given an exported object's key, return the metadata an object store must keep with it:
    Content-Type, and Cache-Control / Content-Encoding where ``browserml serve`` sends them."""
    if key.startswith("v1/blobs/"):
        name = key.rsplit("/", 1)[1]
        headers = {"Content-Type": "application/octet-stream", "Cache-Control": BLOB_HEADERS["cache-control"]}
        if name.endswith(".br"):
            headers["Content-Encoding"] = "br"
        elif name.endswith(".gz"):
            headers["Content-Encoding"] = "gzip"
        return headers
    if key.startswith("v1/models/"):
        return {"Content-Type": "application/json",
                "Cache-Control": document_headers(settings)["cache-control"]}
    return {"Content-Type": content_type(key)}


def response_policy() -> dict[str, dict[str, str]]:
    """Headers a CDN must add by path prefix (what an object store cannot keep per object)."""
    blob = {k: v for k, v in blob_headers().items() if k != "cache-control"}
    return {"/v1/blobs/": blob, "/": isolation_headers()}


# ------------------------------------------------------------------ the static server block


def _add_headers(headers: dict[str, str], indent: str) -> str:
    lines = [f'{indent}add_header {name} "{value}" always;' for name, value in headers.items()]
    lines.append(f"{indent}add_header Access-Control-Allow-Origin $browserml_cors_origin always;")
    lines.append(f"{indent}add_header Access-Control-Expose-Headers $browserml_cors_expose always;")
    return "\n".join(lines)


def _types_block(root: Path, indent: str) -> str:
    """A ``types {}`` block mapping every extension under ``root`` to the server's type."""
    extensions = sorted({p.suffix.lower()[1:] for p in root.rglob("*") if p.is_file() and p.suffix})
    by_type: dict[str, list[str]] = {}
    for ext in extensions:
        kind = mimetypes.guess_type(f"x.{ext}")[0]
        if kind:
            by_type.setdefault(kind, []).append(ext)
    body = "".join(f"{indent}    {kind} {' '.join(exts)};\n" for kind, exts in sorted(by_type.items()))
    return f"{indent}types {{\n{body}{indent}}}"


def static_server_block(root: Path, settings: Settings, listen: str = "8080", server_name: str = "_") -> str:
    """Given an export's public folder, return an nginx config fragment for the ``http {}``
    context (``/etc/nginx/conf.d/``): the maps it needs and one ``server`` serving channel
    documents, blobs, ``/sdk/`` and ``/vendor/`` with the headers ``browserml serve`` sends."""
    root = Path(root)
    origins = "".join(f'    "{origin}" $http_origin;\n' for origin in settings.cors_origins)
    blob_identity = _add_headers({"vary": "Accept-Encoding", **blob_headers()}, "        ")
    blob_coded = {"vary": "Accept-Encoding", **blob_headers()}
    blobs_dir = root / "v1" / "blobs"
    coded_locations = "".join(f"""
    location /_browserml_{encoding}/ {{
        internal;
        alias {blobs_dir}/;
        types {{ }}
        default_type application/octet-stream;
        add_header Content-Encoding {encoding} always;
{_add_headers(blob_coded, "        ")}
    }}
""" for encoding in ("br", "gzip"))
    return f"""# Generated by `browserml export`: serves {root} as `browserml serve` would.
# Include it in nginx's http {{}} context (e.g. /etc/nginx/conf.d/browserml.conf).
map $http_origin $browserml_cors_origin {{
    default "";
{origins}}}
map $browserml_cors_origin $browserml_cors_expose {{
    "" "";
    default "{EXPOSE_HEADERS}";
}}
# Compressed copies only for whole-file requests, as the server does.
map "$http_range:$http_accept_encoding" $browserml_want_br {{
    "~*^:.*\\bbr\\b" 1;
    default 0;
}}
map "$http_range:$http_accept_encoding" $browserml_want_gzip {{
    "~*^:.*\\bgzip\\b" 1;
    default 0;
}}

server {{
    listen {listen};
    server_name {server_name};
    root {root};
    server_tokens off;
    charset utf-8;
    charset_types text/javascript text/plain text/markdown text/html text/css;

    location ~ "{DOCUMENT_LOCATION}" {{
        types {{ }}
        default_type application/json;
        charset off;
{_add_headers(document_headers(settings), "        ")}
    }}

    location ~ "{BLOB_LOCATION}" {{
        set $browserml_blob $1;
        set $browserml_coding "";
        if ($browserml_want_gzip) {{
            set $browserml_coding gzip;
        }}
        if (!-f $document_root/v1/blobs/$browserml_blob.gz) {{
            set $browserml_coding "";
        }}
        set $browserml_br "";
        if ($browserml_want_br) {{
            set $browserml_br br;
        }}
        if (!-f $document_root/v1/blobs/$browserml_blob.br) {{
            set $browserml_br "";
        }}
        if ($browserml_br) {{
            rewrite ^ /_browserml_br/$browserml_blob.br last;
        }}
        if ($browserml_coding) {{
            rewrite ^ /_browserml_gzip/$browserml_blob.gz last;
        }}
        types {{ }}
        default_type application/octet-stream;
{blob_identity}
    }}
{coded_locations}
    location /sdk/ {{
{_types_block(root / "sdk", "        ")}
        default_type text/plain;
{_add_headers(isolation_headers(), "        ")}
    }}

    location /vendor/ {{
{_types_block(root / "vendor", "        ")}
        default_type text/plain;
{_add_headers(isolation_headers(), "        ")}
    }}

    location / {{
{_add_headers(isolation_headers(), "        ")}
        return 404;
    }}
}}
"""


# ------------------------------------------------------------------ the load balancer


def balancer_server_block(upstreams: Iterable[str], listen: str, fail_timeout_s: int = 2) -> str:
    """Given ``host:port`` of several ``browserml serve`` instances, return an nginx fragment that
    balances them (least connections) and fails over without the client seeing it:

    * ``proxy_next_upstream error timeout http_502 http_503 http_504``: an instance that refuses
      the connection, dies mid-request or answers 502-504 is retried on the next one — for GETs,
      and for a POST only when the instance never received it (nginx's rule for non-idempotent
      requests). A telemetry POST lost in flight is retried by the SDK under the same
      idempotency key, so it is stored once.
    * ``max_fails=1 fail_timeout``: a dead instance is skipped for ``fail_timeout_s`` seconds.
    * ``X-Forwarded-For``: instances run with ``--proxy-headers`` so rate limits see the client.
    """
    servers = "".join(f"    server {u} max_fails=1 fail_timeout={fail_timeout_s}s;\n" for u in upstreams)
    return f"""upstream browserml_instances {{
    least_conn;
{servers}    keepalive 64;
}}

server {{
    listen {listen};
    server_tokens off;
    client_max_body_size 600m;

    location / {{
        proxy_pass http://browserml_instances;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 2s;
        proxy_next_upstream error timeout http_502 http_503 http_504;
        proxy_next_upstream_tries 3;
        proxy_request_buffering on;
    }}
}}
"""


# ------------------------------------------------------------------ running nginx


def nginx_binary() -> str:
    """Return Debian's nginx, or raise NginxError saying how to install it."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise NginxError("nginx is not installed; run 'apt-get install -y nginx' (or 'make deps')")
    return found


def main_config(workdir: Path, fragment: str, workers: int = 1) -> str:
    """Return a complete nginx.conf that runs from ``workdir`` without root paths (pid, logs,
    temp folders inside it) and includes ``fragment`` in its http context."""
    user = ""
    if os.geteuid() == 0:  # the worker must read the tree: run it as the owner, not nobody
        user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n"
    temp = "".join(f"    {kind}_temp_path {workdir / (kind + '_temp')};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes {workers};
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
{temp}{fragment}
}}
"""


@dataclass
class NginxProcess:
    """One nginx master started by :func:`start_nginx`; :meth:`stop` ends it (by its pid)."""

    process: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        """Ask nginx to stop (SIGQUIT: finish requests) and wait; kill it after 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> NginxProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_nginx(workdir: Path, fragment: str, port: int, workers: int = 1,
                timeout_s: float = 10.0) -> NginxProcess:
    """Given a folder, a config fragment listening on 127.0.0.1:``port``, start nginx in the
    foreground of a child process and return once the port accepts connections. Raises
    NginxError with nginx's own message when the configuration is refused."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(main_config(workdir, fragment, workers))
    binary = nginx_binary()
    check = subprocess.run([binary, "-t", "-q", "-p", str(workdir), "-c", str(conf)],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise NginxError(f"nginx refused {conf}: {check.stderr.strip()}")
    process = subprocess.Popen([binary, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            said = process.stderr.read().decode().strip() if process.stderr else ""
            raise NginxError(f"nginx exited: {said}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return NginxProcess(process, workdir)
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise NginxError(f"nginx did not listen on 127.0.0.1:{port} in {timeout_s:.0f} s") from None
            time.sleep(0.05)
