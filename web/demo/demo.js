/**
 * The demo page: drop or pick images, each classified in the browser by the SDK and shown with its
 * top-3 labels and time; a badge says which engine, backend, variant and model version run.
 *
 * Offline: ./sw.js (a service worker scoped to /demo/) keeps the page, the SDK modules and the
 * TF.js runtime in a cache; the SDK itself keeps the manifest and model files in the Cache API.
 * After one visit the page reloads and classifies with the server gone.
 *
 * While the model loads, a progress bar shows the bytes arriving (network or cache), then the
 * integrity checks, compile and warm-up (the SDK's `onProgress`); a small model flashes by, a
 * 100 MB one is watched MB by MB.
 *
 * URL parameters: ?model=<name> (default digits), ?channel=<channel>, ?worker=1 (inference in a
 * Web Worker). `window.browsermlDemo` exposes state for tests and curious users.
 */

import { BrowserML, httpSink } from '/sdk/browserml.js';

const params = new URLSearchParams(location.search);
const model = params.get('model') || 'digits';
const channel = params.get('channel') || 'stable';
const useWorker = params.get('worker') === '1';

const $ = (sel) => document.querySelector(sel);
const badge = $('#badge');
const results = $('#results');
const status = $('#status');

/** State for tests and debugging; never holds tensors. */
const state = { ready: false, error: null, done: 0, events: [], classifier: null, offline: 'pending', waiting: [], progress: [] };
window.browsermlDemo = state;

async function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) {
    state.offline = 'unsupported';
    return;
  }
  try {
    await navigator.serviceWorker.register('./sw.js', { scope: './' });
    await navigator.serviceWorker.ready;
    state.offline = 'ready';
    $('#offline').textContent = 'Works offline after this visit.';
  } catch (err) {
    state.offline = `unavailable: ${err.message}`;
  }
}

const MB = 1024 * 1024;
const PHASES = { manifest: 'reading the manifest', verify: 'checking integrity', compile: 'compiling', warmup: 'warming up', ready: 'ready' };

/** Show one progress event in the bar under the badge. @param {object} e see the SDK's progress.js */
function showProgress(e) {
  const box = $('#load');
  box.hidden = false;
  $('#load-bar').value = e.fraction;
  const bytes = `${(e.overall.loaded / MB).toFixed(1)} / ${(e.overall.total / MB).toFixed(1)} MB`;
  const what = e.phase === 'download' ? `downloading ${e.variant} from the ${e.source}`
    : `${PHASES[e.phase] || e.phase}${e.backend ? ` (${e.engine} ${e.backend})` : ''}`;
  $('#load-text').textContent = `${Math.round(e.fraction * 100)}% · ${bytes} · ${what}`;
  state.progress.push({ phase: e.phase, fraction: e.fraction, bar: $('#load-bar').value });
  if (e.phase === 'ready') setTimeout(() => { box.hidden = true; }, 600);
}

async function start() {
  const swReady = registerServiceWorker();
  try {
    const clf = await BrowserML.load({
      model, channel, worker: useWorker, onProgress: showProgress,
      // issue 9: events also go home (batched, beacon on pagehide) so /dashboard fills as you classify.
      telemetry: [(e) => { if (e.type !== 'predict') state.events.push(e); }, httpSink({ intervalMs: 5000 })],
    });
    state.classifier = clf;
    const s = await clf.stats();
    badge.dataset.state = 'ready';
    badge.textContent = `${s.engine} · ${s.backend} · ${s.variant} · ${s.model} v${s.version}`;
    badge.title = `chosen by ${s.selection.source === 'remembered' ? 'an earlier measurement' : 'measuring'}; loaded in ${Math.round(s.load.ms)} ms`;
    state.stats = s;
    state.ready = true;
    // Files picked while the model was loading are classified now, not dropped.
    const waiting = state.waiting.splice(0);
    if (waiting.length) await classifyFiles(waiting);
  } catch (err) {
    badge.dataset.state = 'error';
    badge.textContent = `model not loaded: ${err.message}`;
    state.error = err.message;
    if (state.waiting.length) status.textContent = `cannot classify: ${err.message}`;
  }
  await swReady;
}

/** One card per file, filled in when its answer arrives. */
function card(file) {
  const el = document.createElement('article');
  el.className = 'result';
  el.dataset.state = 'pending';
  const h = document.createElement('h2');
  h.textContent = file.name;
  h.title = file.name;
  el.append(h);
  results.append(el);
  return el;
}

function showResult(el, file, r) {
  el.dataset.state = 'ok';
  const img = document.createElement('img');
  img.className = 'thumb';
  img.alt = file.name;
  img.src = URL.createObjectURL(file);
  img.onload = () => URL.revokeObjectURL(img.src);
  const ol = document.createElement('ol');
  for (const { label, p } of r.labels) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'label';
    name.textContent = label;
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.style.width = `${Math.max(2, p * 100).toFixed(1)}%`;
    const pct = document.createElement('span');
    pct.className = 'p';
    pct.textContent = `${(p * 100).toFixed(1)}%`;
    li.append(name, bar, pct);
    ol.append(li);
  }
  const meta = document.createElement('div');
  meta.className = 'meta';
  meta.textContent = `${r.ms.toFixed(1)} ms · ${r.backend} · ${r.variant} · v${r.version}`;
  el.append(img, ol, meta);
}

function showError(el, err) {
  el.dataset.state = 'error';
  el.dataset.code = err.code || 'error';
  const p = document.createElement('p');
  p.className = 'error';
  p.textContent = err.message;
  el.append(p);
}

async function classifyFiles(files) {
  if (!state.ready) {
    if (state.error) {
      status.textContent = `cannot classify: ${state.error}`;
    } else {
      state.waiting.push(...files);
      status.textContent = 'the model is still loading… your images are queued';
    }
    return;
  }
  const list = [...files];
  status.textContent = `classifying ${list.length} file${list.length === 1 ? '' : 's'}…`;
  // Cards appear at once; files are classified one after another so each card's ms is that
  // image's own time (concurrent calls would each include the others' waiting), and a bad file
  // only fills its own card with the error.
  const cards = list.map((file) => card(file));
  for (let i = 0; i < list.length; i += 1) {
    try {
      showResult(cards[i], list[i], await state.classifier.classify(list[i], { topK: 3 }));
    } catch (err) {
      showError(cards[i], err);
    }
    state.done += 1;
  }
  status.textContent = `${state.done} classified on this page`;
}

const drop = $('#drop');
$('#files').addEventListener('change', (e) => classifyFiles(e.target.files));
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  classifyFiles(e.dataTransfer.files);
});

start();
