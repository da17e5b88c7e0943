// GPU-machine bench page (issue 18): one scenario per visit, picked by the query string, result in
// window.result (polled by driver.py). Scenarios:
//   ?s=auto&model=M            the SDK choosing by itself: time to first answer from navigation
//                              start, the upgrade's measurements, the path it settles on (median
//                              of n classify calls) and its batch 1/8/32 figures
//   ?s=forced&model=M&c=E/B/V  one candidate only (engine/backend/variant): first prediction
//                              (warm-up = shader compile), median, batch 1/8/32
//   ?s=soak&model=M&c=E/B/V    start on that candidate (as a remembered choice: every other one
//                              stays a fallback), n predictions with tf.memory() before/after,
//                              the memory guard's rebuild, then a forced WEBGL_lose_context with
//                              predictions going on through it
import { BrowserML } from '/sdk/browserml.js';
import { deviceKey } from '/sdk/device.js';
import { choiceKey } from '/sdk/selection.js';

const q = new URLSearchParams(location.search);
const model = q.get('model');
const n = Number(q.get('n') || 50);

function image(spec) {
  const rgba = new Uint8ClampedArray(spec.width * spec.height * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7919) % 256));
  return new ImageData(rgba, spec.width, spec.height);
}

async function timed(clf, img, count) {
  const times = [];
  for (let i = 0; i < count; i += 1) {
    const a = performance.now();
    await clf.classify(img);
    times.push(performance.now() - a);
  }
  times.sort((a, b) => a - b);
  return { median: times[times.length >> 1], p10: times[Math.floor(times.length * 0.1)], p90: times[Math.floor(times.length * 0.9)], runs: times.length };
}

function tfMemory() {
  if (!globalThis.tf) return null;
  const m = globalThis.tf.memory();
  return { numTensors: m.numTensors, numBytes: m.numBytes, numBytesInGPU: m.numBytesInGPU ?? null, backend: globalThis.tf.getBackend() };
}

function summary(s) {
  return {
    engine: s.engine, backend: s.backend, variant: s.variant, threads: s.threads, gpu: s.gpu,
    load: s.load && { ms: s.load.ms, selection: s.load.selection, firstMs: s.load.firstMs, engineMs: s.load.engineMs },
    selection: s.selection && s.selection.results, upgrade: s.upgrade, fallbacks: s.fallbacks, errors: s.errors,
    rebuilds: s.rebuilds, memory: s.memory, batch: s.batch,
  };
}

async function auto() {
  const clf = await BrowserML.load({ model, shared: false });
  const spec = clf._impl.manifest.input;
  const img = image(spec);
  const first = await clf.classify(img);
  const ttfp = performance.now();
  const up = await clf.upgraded();
  const afterUpgrade = performance.now();
  for (let i = 0; i < 3; i += 1) await clf.classify(img);
  const t = await timed(clf, img, n);
  const batches = await clf.measureBatches();
  const s = clf.stats();
  await clf.dispose();
  return { ttfp, upgradeDoneAt: afterUpgrade, first: { engine: first.engine, backend: first.backend, variant: first.variant }, timing: t, batches, stats: summary(s), tfLoaded: Boolean(globalThis.tf) };
}

function candidateOptions(c) {
  const [engine, backend, variant] = c.split('/');
  return { engines: [engine], backends: [backend], variants: [variant], remember: false, litert: engine === 'litert' ? 'auto' : 'off' };
}

async function forced() {
  const c = q.get('c');
  const t0 = performance.now();
  const clf = await BrowserML.load({ model, shared: false, ...candidateOptions(c) });
  const loadMs = performance.now() - t0;
  const spec = clf._impl.manifest.input;
  const img = image(spec);
  const a = performance.now();
  const first = await clf.classify(img);
  const firstClassifyMs = performance.now() - a;
  const ttfp = performance.now();
  for (let i = 0; i < 3; i += 1) await clf.classify(img);
  const t = await timed(clf, img, n);
  const batches = q.get('batches') === '0' ? null : await clf.measureBatches();
  const s = clf.stats();
  await clf.dispose();
  return { candidate: c, ok: `${first.engine}/${first.backend}/${first.variant}` === c, loadMs, ttfp, firstClassifyMs, timing: t, batches, stats: summary(s) };
}

async function soak() {
  const c = q.get('c');
  const [engine, backend, variant] = c.split('/');
  // A remembered, finished choice: the SDK starts on it and measures nothing else; every other
  // candidate stays available as a fallback (a context loss needs somewhere to go).
  const probe = await BrowserML.load({ model, shared: false, remember: false, engines: [engine], backends: [backend], variants: [variant], litert: 'off' });
  const version = probe._impl.manifest.version;
  await probe.dispose();
  localStorage.setItem(choiceKey(deviceKey(), model, version), JSON.stringify({ engine, backend, variant, measured: true, at: Date.now() }));
  const events = [];
  const clf = await BrowserML.load({ model, shared: false, telemetry: (e) => { if (e.type !== 'predict') events.push(e); } });
  const spec = clf._impl.manifest.input;
  const img = image(spec);
  for (let i = 0; i < 20; i += 1) await clf.classify(img);
  const before = tfMemory();
  let failed = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i += 1) {
    try { await clf.classify(img); } catch { failed += 1; }
  }
  const soakMs = performance.now() - t0;
  const after = tfMemory();
  const statsAfterSoak = summary(clf.stats());
  // The memory guard's answer: a rebuild (fresh backend, model from the Cache API).
  const r0 = performance.now();
  await clf.rebuild('bench');
  const rebuildMs = performance.now() - r0;
  const afterRebuild = tfMemory();
  for (let i = 0; i < 5; i += 1) await clf.classify(img);
  // A forced context loss, with predictions going on through it.
  let lost = null;
  try {
    const b = globalThis.tf && globalThis.tf.backend();
    const gl = b && b.gpgpu && b.gpgpu.gl;
    const ext = gl && gl.getExtension('WEBGL_lose_context');
    if (ext) { ext.loseContext(); lost = 'WEBGL_lose_context'; }
  } catch (err) { lost = `could not lose: ${err}`; }
  let failedAcrossLoss = 0;
  const answers = [];
  const l0 = performance.now();
  for (let i = 0; i < 50; i += 1) {
    try { const r = await clf.classify(img); answers.push(`${r.engine}/${r.backend}`); } catch (err) { failedAcrossLoss += 1; answers.push(String(err)); }
  }
  const lossMs = performance.now() - l0;
  const s = clf.stats();
  await clf.dispose();
  return {
    candidate: c, predictions: n, failed, soakMs, msPer: soakMs / n, before, after, afterRebuild, rebuildMs, statsAfterSoak,
    lost, failedAcrossLoss, lossMs, answersAfterLoss: [...new Set(answers)], stats: summary(s),
    events: events.filter((e) => e.type === 'fallback' || e.type === 'memory' || e.type === 'error'),
  };
}

const scenarios = { auto, forced, soak };
(async () => {
  try {
    window.result = { ok: true, scenario: q.get('s'), model, ...(await scenarios[q.get('s')]()) };
  } catch (err) {
    window.result = { ok: false, scenario: q.get('s'), model, error: String(err && err.stack ? err.stack : err) };
  }
})();
