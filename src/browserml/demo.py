"""The demo job behind ``make demo``: the whole pipeline on the built-in digits, then the server.

Each step is skipped when its output is already there, so a second ``make demo`` is quick:
:func:`prepare_digits` trains, converts and verifies; :func:`publish_digits` puts the build in the
registry on ``stable`` unless a digits version is already there; :func:`demo_urls` says where the
demo page and the dashboard are (the dashboard URL carries the admin token in its ``#fragment``,
which browsers never send to the server). The CLI then runs the server until interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .convert import convert
from .server.auth import ensure_admin_token
from .settings import Settings
from .train import RunConfig, train
from .variants import Build, read_build
from .verify import VerifyReport, verify

DIGITS = "digits"


@dataclass
class DemoResult:
    build_dir: Path
    build: Build
    report: VerifyReport


def prepare_digits(workdir: Path, epochs: int = 5) -> DemoResult:
    """Train (if absent), convert (if absent) and verify the digits model under ``workdir``."""
    run_dir = workdir / "runs" / DIGITS
    build_dir = workdir / "build" / DIGITS
    if not (run_dir / "model.keras").is_file():
        train(RunConfig(data="mnist", arch="cnn", input_size=28, epochs=epochs), run_dir)
    if not (build_dir / "variants.json").is_file():
        convert(run_dir, build_dir, name=DIGITS)
    report = verify(build_dir, run_dir)
    return DemoResult(build_dir, read_build(build_dir), report)


@dataclass
class Published:
    version: int
    fresh: bool


def publish_digits(settings: Settings, build_dir: Path) -> Published:
    """Given settings and the digits build, publish it as ``digits`` on ``stable`` unless the
    registry already has a digits version; return the version serving and whether it is new."""
    from .registry import Registry

    with Registry(settings) as registry:
        existing = [m for m in registry.list() if m["name"] == DIGITS]
        if existing and existing[0]["versions"]:
            stable = existing[0]["channels"].get("stable")
            version = stable["version"] if stable else existing[0]["versions"][-1]["version"]
            return Published(version, False)
        published = registry.publish(build_dir, DIGITS, channel="stable")
    return Published(published.version, True)


def demo_urls(settings: Settings, host: str, port: int) -> dict[str, str]:
    """Given where the server listens, return the demo and dashboard URLs (the dashboard's with
    the admin token in its fragment, unless the dashboard is public)."""
    base = f"http://{host}:{port}"
    dashboard = f"{base}/dashboard/"
    if not settings.dashboard_public:
        dashboard += f"#token={ensure_admin_token(settings.data_dir)}"
    return {"demo": f"{base}/demo/", "dashboard": dashboard, "metrics": f"{base}/metrics",
            "stats": f"{base}/v1/stats?model={DIGITS}&since=1h&group_by=backend"}
