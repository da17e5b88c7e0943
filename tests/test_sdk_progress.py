"""Load progress of a 25 MB model in real Chromium against a real server (issue 19).

The model is a real TF.js layers model (``browserml.bench.synthetic``: flatten -> dense 8,000 ->
dense 10 on 28x28x1 digits, 25.4 MB of float32 weights in 4 MB shards, random weights: this test
is about bytes, not accuracy), published into a fresh registry. ``load({onProgress})`` must report
the download at least every 1 MB of the overall bytes and end at 100 %; a second load reports the
same bytes from the cache (on the page and in worker mode); a rebuild reports on the classifier's
own ``progress`` events; the demo page's bar follows the same events to 1.
"""

from __future__ import annotations

import itertools

import pytest

from browserml.bench.synthetic import write_dense_build
from browserml.browser import launch_browser
from browserml.variants import read_build
from conftest import publish_and_serve
from test_sdk import READY_OR_FAILED

MB = 1024 * 1024


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory):
    build = write_dense_build(tmp_path_factory.mktemp("big") / "build", units=8000)
    served = publish_and_serve(build, tmp_path_factory.mktemp("big-data"))
    yield served
    served.live.stop()


LOAD_TWICE = """
async () => {
  const { BrowserML } = await import('/sdk/browserml.js');
  const keep = (e) => ({ phase: e.phase, file: e.file || null, source: e.source || null, loaded: e.loaded,
    total: e.total, overall: e.overall, fraction: e.fraction, backend: e.backend || null });
  const opts = { model: 'digits', shared: false, backends: ['cpu'], litert: 'off', remember: false };
  const first = [];
  const clf = await BrowserML.load({ ...opts, onProgress: (e) => first.push(keep(e)) });
  const answer = await clf.classify(new ImageData(28, 28));
  const later = [];
  clf.addEventListener('progress', (e) => later.push(keep(e.detail)));
  await clf.rebuild('test');
  await clf.dispose();
  const second = [];
  const again = await BrowserML.load({ ...opts, onProgress: (e) => second.push(keep(e)) });
  await again.dispose();
  const worker = [];
  const inWorker = await BrowserML.load({ ...opts, worker: true, onProgress: (e) => worker.push(keep(e)) });
  await inWorker.dispose();
  return { first, second, later, worker, labels: answer.labels.length };
}
"""


def check_ends_at_100(events: list[dict]) -> None:
    last = events[-1]
    assert last["phase"] == "ready" and last["fraction"] == 1
    assert last["overall"]["loaded"] == last["overall"]["total"]
    assert last["overall"]["filesDone"] == last["overall"]["files"]


def test_25mb_model_reports_progress_every_megabyte_and_ends_at_100(big_server):
    files = read_build(big_server.build_dir).variants[0].files
    build_bytes = sum(f.bytes for f in files)
    assert build_bytes > 25_000_000
    with launch_browser() as context:
        page = context.new_page()
        page.goto(big_server.url + "/demo/bench.html")
        out = page.evaluate(LOAD_TWICE)
    assert out["labels"] == 3
    first = out["first"]
    assert first[0]["phase"] == "manifest"
    check_ends_at_100(first)
    assert first[-1]["overall"]["total"] == build_bytes
    downloads = [e for e in first if e["phase"] == "download"]
    assert {e["source"] for e in downloads} == {"network"}
    seen = [0] + [e["overall"]["loaded"] for e in downloads]
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert max(gaps) <= MB, f"largest gap between progress events: {max(gaps):,} bytes"
    print(f"{build_bytes:,} bytes: {len(downloads)} download events, largest gap {max(gaps):,} bytes")
    assert seen[-1] == build_bytes and all(g >= 0 for g in gaps)
    assert len(downloads) >= build_bytes // MB
    phases = [e["phase"] for e in first]
    assert phases.count("verify") == len(files)
    assert phases.index("compile") > max(i for i, p in enumerate(phases) if p == "verify")
    assert "warmup" in phases and first[phases.index("compile")]["backend"] == "cpu"

    # The second load reads every file from the Cache API: same bytes, source "cache".
    second = out["second"]
    check_ends_at_100(second)
    assert {e["source"] for e in second if e["phase"] == "download"} == {"cache"}
    assert second[-1]["overall"]["total"] == build_bytes

    # Worker mode posts the same events to the page (its files come from the same Cache API).
    check_ends_at_100(out["worker"])
    assert out["worker"][-1]["overall"]["total"] == build_bytes

    # A rebuild after load reports on the classifier's own progress events.
    later = out["later"]
    assert {e["phase"] for e in later} >= {"download", "verify", "compile", "warmup"}
    assert later[-1]["fraction"] == 1


def test_demo_page_shows_a_progress_bar_that_fills(big_server):
    with launch_browser() as context:
        page = context.new_page()
        page.goto(big_server.url + "/demo/")
        page.wait_for_function(READY_OR_FAILED)
        assert page.evaluate("window.browsermlDemo.error") is None
        steps = page.evaluate("window.browsermlDemo.progress")
        text = page.text_content("#load-text")
        page.wait_for_selector("#load", state="hidden")
    bars = [s["bar"] for s in steps]
    assert steps[-1]["phase"] == "ready" and bars[-1] == 1
    assert len({round(b, 2) for b in bars}) > 10 and bars == sorted(bars)
    assert text is not None and text.startswith("100% · ") and "MB" in text
