"""The SDK in real Chromium loading the real digits model from a static base URL — Debian's nginx
serving a ``browserml export`` tree on another origin — while its telemetry goes to the API
server's URL (issue 20)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from browserml import nginx
from browserml.browser import launch_browser
from browserml.export import NGINX_FILE, export
from browserml.registry import Registry
from browserml.server.run import free_port, start_in_thread
from browserml.settings import Settings

LOAD_FROM_CDN = """
async ([cdn, api, pngs]) => {
  const { BrowserML, httpSink } = await import(`${cdn}/sdk/browserml.js`);
  const sink = httpSink({ server: api, intervalMs: 600000, listen: false });
  const clf = await BrowserML.load({ model: 'digits', server: cdn, shared: false, telemetry: sink,
                                     clientId: 'cdn-test-client' });
  const answers = [];
  for (const b64 of pngs) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    answers.push(await clf.classify(new Blob([bytes], { type: 'image/png' }), { topK: 1 }));
  }
  await sink.flush();
  const out = { answers, sink: sink.stats(), isolated: self.crossOriginIsolated };
  await clf.dispose();
  return out;
}
"""


@pytest.fixture
def cdn_and_api(digits_build: Path, tmp_path: Path) -> Iterator[tuple[str, str, Settings]]:
    """An API server (its page is where the SDK runs) and nginx serving the export on another port."""
    settings = Settings(data_dir=tmp_path / "data")
    with Registry(settings) as registry:
        registry.publish(digits_build, "digits", channel="stable")
    api = start_in_thread(settings)
    port = free_port()
    # The CDN lets the API's pages read its files (CORS), as `cors_origins` would on a server.
    export(settings.model_copy(update={"cors_origins": [api.url]}), tmp_path / "export",
           listen=f"127.0.0.1:{port}")
    fragment = (tmp_path / "export" / NGINX_FILE).read_text()
    try:
        with nginx.start_nginx(tmp_path / "nginx", fragment, port):
            yield f"http://127.0.0.1:{port}", api.url, settings
    finally:
        api.stop()


def test_the_sdk_loads_from_a_static_base_url_and_reports_to_the_api(cdn_and_api, digit_pngs):
    import base64

    cdn, api, settings = cdn_and_api
    pngs = [base64.b64encode(png).decode() for _, png in digit_pngs[::10]]
    with launch_browser() as context:
        page = context.new_page()
        files: list[str] = []
        page.on("requestfinished", lambda request: files.append(request.url))
        page.goto(api + "/demo/bench.html")
        out = page.evaluate(LOAD_FROM_CDN, [cdn, api, pngs])
    assert out["isolated"] is True
    pairs = zip(digit_pngs[::10], out["answers"], strict=True)
    right = sum(a["labels"][0]["label"] == str(d) for (d, _), a in pairs)
    assert right >= 9, f"{right}/10"
    assert out["answers"][0]["version"] == 1
    # Model, SDK and runtime files all came from the CDN; the API served only the page and telemetry.
    assert any(u.startswith(f"{cdn}/v1/blobs/") for u in files)
    assert any(u.startswith(f"{cdn}/v1/models/digits/channels/stable.json") for u in files)
    assert any(u.startswith(f"{cdn}/vendor/") for u in files)
    assert not [u for u in files if u.startswith(api) and "/v1/" in u and "/v1/telemetry" not in u]
    assert out["sink"]["sent"] >= 2 and out["sink"]["failures"] == 0
    from browserml.telemetry.store import open_store

    store = open_store(settings)
    try:
        assert store.count_events() == out["sink"]["sent"]
    finally:
        store.close()
