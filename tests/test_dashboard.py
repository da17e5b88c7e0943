"""The dashboard in real Chromium, fed by a real SDK session (issue 9).

A page on the server's origin loads the real digits model with the SDK and its HTTP telemetry sink,
classifies real MNIST digits, and the sink posts the events to ``/v1/telemetry``. The dashboard is
then opened with the admin token, a screenshot taken, and its charts checked for that data: chart
datasets hold the session's predictions, and the screenshot has the prediction bars' colour.
"""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image

from browserml.browser import launch_browser

SESSION = """
async (pngs) => {
  const { BrowserML, httpSink } = await import('/sdk/browserml.js');
  const sink = httpSink({ intervalMs: 60000 });
  const clf = await BrowserML.load({ model: 'digits', shared: false, telemetry: sink });
  for (const b64 of pngs) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    await clf.classify(new Blob([bytes], { type: 'image/png' }));
  }
  await clf.dispose();
  while (sink.queue.length) await sink.flush();
  return sink.stats();
}
"""

CHART_DATA = """
() => Object.fromEntries([...document.querySelectorAll('canvas')].map((c) => {
  const chart = Chart.getChart(c);
  const values = chart.data.datasets.flatMap((d) => d.data).filter((v) => typeof v === 'number');
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let inked = 0;
  for (let i = 3; i < px.length; i += 4) if (px[i]) inked += 1;
  return [c.id, { sum: values.reduce((a, b) => a + b, 0), points: values.length, inked,
                  labels: chart.data.labels.length }];
}))
"""


def test_dashboard_charts_a_real_sdk_session(digits_build, sdk_server_factory, digit_pngs, tmp_path):
    served = sdk_server_factory(digits_build)
    token = (served.settings.data_dir / "admin-token").read_text().strip()
    pngs = [base64.b64encode(png).decode() for _, png in digit_pngs[:30]]
    with launch_browser() as context:
        page = context.new_page()
        page.goto(f"{served.url}/demo/?model=no-such-model")
        sink = page.evaluate(SESSION, pngs)
        assert sink["sent"] >= 31 and sink["dropped"] == 0, sink

        stats = httpx.get(f"{served.url}/v1/stats", params={"model": "digits", "since": "1h",
                          "group_by": "backend"}, headers={"authorization": f"Bearer {token}"}).json()
        assert stats["total"]["predictions"] == 30
        assert stats["total"]["events"]["load"] == 1 and stats["total"]["init_ms"]["mean"] > 0
        chosen = [g for g in stats["groups"] if g["predictions"]]
        assert len(chosen) == 1 and chosen[0]["key"] and chosen[0]["latency_ms"]["p50"] > 0

        dash = context.new_page()
        dash.set_viewport_size({"width": 1280, "height": 1400})
        dash.goto(f"{served.url}/dashboard/?refresh=2#token={token}")
        dash.wait_for_function(
            "document.body.dataset.state === 'ready' && Number(document.body.dataset.points) > 0")
        shot = dash.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        charts = dash.evaluate(CHART_DATA)
        predictions = dash.text_content("#t-predictions")
        versions = dash.text_content("#versions tbody")

    assert charts["c-rate"]["sum"] == 30, charts
    assert charts["c-latency"]["points"] > 0 and charts["c-latency"]["sum"] > 0
    assert charts["c-backends"]["sum"] == stats["total"]["count"]
    assert charts["c-devices"]["sum"] == stats["total"]["count"]
    assert charts["c-memory"]["labels"] > 0
    assert all(c["inked"] > 500 for c in charts.values()), charts
    assert predictions == "30"
    assert "v1" in versions and "stable 100%" in versions
    # The screenshot shows the prediction bars (Chart.js draws them in the first palette colour).
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    bar = sum(1 for r, g, b in image.getdata()
              if abs(r - 0x1F) < 12 and abs(g - 0x77) < 12 and abs(b - 0xB4) < 12)
    assert bar > 200, f"only {bar} bar-coloured pixels in the screenshot"
