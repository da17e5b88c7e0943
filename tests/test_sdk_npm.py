"""The SDK as an npm package (issue 19): a clean npm project installs ``@browserml/sdk`` from its
``npm pack`` tarball, type-checks a typed usage example with ``tsc``, bundles a page with esbuild
and the bundled page classifies a real digit in Chromium, on TF.js and after the LiteRT.js
upgrade.

The clean project has its own package.json and node_modules; the SDK comes from the tarball
(offline: it has no dependencies, TF.js and LiteRT.js are optional peers), and the peers are linked
from the checkout's node_modules after the install — the exact locked versions, no network in a
test. esbuild resolves TF.js, its wasm backend and LiteRT.js through those links; the page then
loads no SDK module from /sdk/ and no TF.js or LiteRT.js module from /vendor/ (only the wasm
binaries and LiteRT.js's emscripten glue beside them).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from browserml.browser import launch_browser
from browserml.registry import Registry
from browserml.server.run import start_in_thread
from browserml.settings import PROJECT_ROOT, Settings, get_settings
from conftest import SdkServer
from test_sdk import b64

BIN = PROJECT_ROOT / "node_modules" / ".bin"
PEERS = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "@litertjs/core")

MAIN = """
import { load, runtimes } from '@browserml/sdk/bundled';

window.classifyDigit = async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const progress = [];
  const clf = await load({ model: 'digits', backends: ['wasm', 'cpu'], litert: 'off', shared: false,
    onProgress: (e) => progress.push(e.phase) });
  const r = await clf.classify(new Blob([bytes], { type: 'image/png' }), { topK: 3 });
  const stats = await clf.stats();
  await clf.dispose();
  return { top: r.labels[0].label, engine: r.engine, backend: r.backend, tfjs: runtimes.tf.version.tfjs,
    engineVersion: stats.engineVersion, globalTf: typeof window.tf, last: progress.at(-1) };
};
window.upgradeDigit = async (b64) => {
  const blob = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: 'image/png' });
  const clf = await load({ model: 'digits', litert: 'force', remember: false, shared: false });
  const first = await clf.classify(blob);
  const upgrade = await clf.upgraded();
  const second = await clf.classify(blob);
  await clf.dispose();
  return { first: first.engine, state: upgrade.state, engine: second.engine, variant: second.variant,
    top: second.labels[0].label };
};
window.bundleReady = true;
"""

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>bundled</title>
<script type="module" src="./app.js"></script></head><body>bundled page</body></html>
"""


def npm(*args: str, cwd: Path) -> None:
    subprocess.run(["npm", *args, "--no-audit", "--no-fund", "--loglevel=error"], cwd=cwd, check=True,
                   capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean npm project with @browserml/sdk installed from its tarball and the peers linked."""
    root = tmp_path_factory.mktemp("npm-project")
    npm("pack", "--pack-destination", str(root), "--silent", cwd=PROJECT_ROOT / "sdk")
    (tarball,) = root.glob("browserml-sdk-*.tgz")
    (root / "package.json").write_text('{"name": "clean-app", "version": "1.0.0", "private": true, '
                                       '"type": "module"}\n')
    npm("install", "--offline", f"./{tarball.name}", cwd=root)
    installed = root / "node_modules" / "@browserml" / "sdk"
    assert (installed / "types" / "browserml.d.ts").is_file() and not (installed / "test").exists()
    for peer in PEERS:
        link = root / "node_modules" / peer
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(get_settings().node_modules / peer)
    return root


def test_typed_usage_example_passes_tsc(project):
    for name in ("usage.ts", "tsconfig.json"):
        shutil.copy(PROJECT_ROOT / "sdk" / "examples" / name, project / name)
    result = subprocess.run([str(BIN / "tsc"), "-p", "tsconfig.json"], cwd=project, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check has teeth: a wrong option type is refused.
    (project / "wrong.ts").write_text("import { load } from '@browserml/sdk';\n"
                                      "void load({ model: 'digits', backends: ['tpu'] });\n")
    wrong = subprocess.run([str(BIN / "tsc"), "--noEmit", "--strict", "--module", "nodenext",
                            "--moduleResolution", "nodenext", "--lib", "es2022,dom", "wrong.ts"],
                           cwd=project, capture_output=True, text=True, timeout=300)
    assert wrong.returncode != 0 and "tpu" in wrong.stdout


@pytest.fixture
def bundled_server(project, digits_build, tmp_path):
    """esbuild's bundle of MAIN served as the origin's /demo/ page beside the published digits."""
    (project / "main.js").write_text(MAIN)
    subprocess.run([str(BIN / "esbuild"), "main.js", "--bundle", "--format=esm", "--minify",
                    "--outfile=out/app.js"], cwd=project, check=True, capture_output=True, text=True,
                   timeout=300)
    web = tmp_path / "web" / "demo"
    web.mkdir(parents=True)
    shutil.copy(project / "out" / "app.js", web / "app.js")
    (web / "index.html").write_text(PAGE)
    settings = Settings(data_dir=tmp_path / "data", web_dir=tmp_path / "web")
    with Registry(settings) as registry:
        registry.publish(digits_build, "digits")
    live = start_in_thread(settings)
    yield SdkServer(live.url, settings, digits_build, live)
    live.stop()


def test_esbuild_bundled_page_classifies_a_digit(bundled_server, digit_pngs):
    digit, png = digit_pngs[22]
    requests: list[str] = []
    with launch_browser() as context:
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.goto(bundled_server.url + "/demo/")
        page.wait_for_function("window.bundleReady === true")
        out = page.evaluate("(png) => window.classifyDigit(png)", b64(png))
        upgraded = page.evaluate("(png) => window.upgradeDigit(png)", b64(png))
    assert out["top"] == str(digit)
    assert (out["engine"], out["tfjs"], out["engineVersion"]) == ("tfjs", "4.22.0", "4.22.0")
    assert out["globalTf"] == "undefined" and out["last"] == "ready"
    paths = [u[len(bundled_server.url):] for u in requests if u.startswith(bundled_server.url)]
    assert not [p for p in paths if p.startswith("/sdk/")], paths
    # From /vendor/ only what is not JavaScript a bundler can take: wasm binaries, and LiteRT.js's
    # emscripten glue that sits beside its wasm build.
    vendor_js = [p for p in paths if p.startswith("/vendor/") and p.endswith(".js")]
    assert all(p.startswith("/vendor/@litertjs/core/wasm/") for p in vendor_js), vendor_js
    if out["backend"] == "wasm":
        assert [p for p in paths if p.startswith("/vendor/@tensorflow/tfjs-backend-wasm/dist/")]
    # LiteRT.js from the bundle too: its JS never requested, its wasm build from /vendor/.
    assert (upgraded["first"], upgraded["state"], upgraded["engine"]) == ("tfjs", "switched", "litert")
    assert upgraded["variant"].startswith("tflite-") and upgraded["top"] == str(digit)
    assert [p for p in paths if p.startswith("/vendor/@litertjs/core/wasm/") and p.endswith(".wasm")]
    assert not [p for p in paths if p.startswith("/vendor/@litertjs/") and "/dist/" in p], paths
