/**
 * The BrowserML dashboard: what every browser running a model is doing, from /v1/stats.
 *
 * Data: `/v1/stats` (window summary, split by backend/device/version), `/v1/stats/series` (one point
 * per minute/hour/day, split by the chosen dimension), `/v1/stats/models` and `/v1/models`
 * (channels). Everything but /v1/models needs the admin token unless the server makes the dashboard
 * public: the token comes from the URL fragment (`#token=...`, never sent to the server in the URL),
 * is kept in sessionStorage, or is asked for.
 *
 * Refreshes itself every `?refresh=<s>` seconds (default 10); `?window=6h` picks the window. Chart.js 4 is loaded as a classic
 * script from /vendor/ (our origin). `document.body.dataset.state` is `ready` once charts are drawn
 * and `dataset.points` counts the series points shown (tests read both).
 */

const $ = (s) => document.querySelector(s);
const params = new URLSearchParams(location.search);
// A missing, non-numeric or tiny value must not poll in a tight loop (setInterval(NaN) is 0 ms).
const refreshS = Math.max(1, Number(params.get('refresh')) || 10);
const Chart = /** @type {any} */ (globalThis).Chart;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

let token = null;
const charts = {};

function readToken() {
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get('token')) {
    sessionStorage.setItem('browserml:token', frag.get('token'));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('browserml:token');
}

class Unauthorized extends Error {}

async function api(path, query = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) url.searchParams.set(k, v);
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, cache: 'no-store' });
  if (res.status === 401) throw new Unauthorized('unauthorized');
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || `${res.status}`);
  return body;
}

const fmtMs = (v) => (v === null || v === undefined ? '–' : v < 10 ? v.toFixed(2) : v.toFixed(0));
const fmtPct = (v) => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(2)}%`);
const fmtBytes = (v) => (v ? `${(v / 1e6).toFixed(1)} MB` : '–');
const fmtTime = (t, step) => {
  const d = new Date(t);
  return step >= 86400000 ? d.toLocaleDateString() : step >= 3600000
    ? `${d.getMonth() + 1}/${d.getDate()} ${d.getHours()}h` : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
};

function chart(id, type, data, options = {}) {
  const opts = {
    animation: false, responsive: true, maintainAspectRatio: false,
    plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } }, ...options,
  };
  if (charts[id]) {
    charts[id].data = data;
    charts[id].options = opts;
    charts[id].update('none');
  } else {
    charts[id] = new Chart($(`#${id}`), { type, data, options: opts });
  }
}

/** Series points grouped by key: {labels: [t...], byKey: Map(key -> Map(t -> point))}. */
function pivot(points) {
  const times = [...new Set(points.map((p) => p.t))].sort((a, b) => a - b);
  const byKey = new Map();
  for (const p of points) {
    const key = p.key === null ? 'all' : String(p.key || 'unknown');
    if (!byKey.has(key)) byKey.set(key, new Map());
    byKey.get(key).set(p.t, p);
  }
  return { times, byKey };
}

async function loadModels() {
  const { models } = await api('/v1/stats/models');
  const select = $('#model');
  const wanted = params.get('model') || select.value || models[0];
  select.replaceChildren(...models.map((m) => new Option(m, m, false, m === wanted)));
  return select.value || null;
}

async function refresh() {
  try {
    const model = await loadModels();
    if (!model) {
      $('#error').hidden = false;
      $('#error').textContent = 'No telemetry yet: classify something on a page using the SDK with httpSink().';
      document.body.dataset.state = 'empty';
      return;
    }
    const since = $('#window').value;
    const group = $('#group').value;
    const [summary, series, total, backends, devices, versions, registry] = await Promise.all([
      api('/v1/stats', { model, since }),
      api('/v1/stats/series', { model, since, group_by: group }),
      api('/v1/stats/series', { model, since }),
      api('/v1/stats', { model, since, group_by: 'backend' }),
      api('/v1/stats', { model, since, group_by: 'device' }),
      api('/v1/stats', { model, since: '15m', group_by: 'version' }),
      api('/v1/models').catch(() => ({ models: [] })),
    ]);
    $('#error').hidden = true;
    render(summary, series, total, backends, devices, versions, registry, model);
    $('#updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.points = String(total.points.length);
    document.body.dataset.state = 'ready';
  } catch (err) {
    if (err instanceof Unauthorized) {
      sessionStorage.removeItem('browserml:token');
      $('#login').hidden = false;
      $('#main').hidden = true;
      document.body.dataset.state = 'login';
      return;
    }
    $('#error').hidden = false;
    $('#error').textContent = `could not refresh: ${err.message}`;
    document.body.dataset.state = 'error';
  }
}

function render(summary, series, total, backends, devices, versions, registry, model) {
  const t = summary.total;
  $('#t-predictions').textContent = t.predictions.toLocaleString();
  // Counts beside how many senders they come from: many events from one client are one opinion.
  $('#t-clients').textContent = `${t.count.toLocaleString()} / ${summary.clients ?? '–'} / ${summary.addresses ?? '–'}`;
  $('#t-latency').textContent = `${fmtMs(t.latency_ms.p50)} / ${fmtMs(t.latency_ms.p95)} / ${fmtMs(t.latency_ms.p99)} ms`;
  $('#t-init').textContent = `${fmtMs(t.init_ms.mean)} / ${fmtMs(t.warmup_ms.mean)} ms`;
  $('#t-errors').textContent = `${fmtPct(t.error_rate)} / ${t.fallback_rate === null ? '–' : t.fallback_rate.toFixed(2)}`;
  const saved = t.savings ? t.savings.estimated : 0;
  $('#t-savings').textContent = `$${saved.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  $('#t-savings-note').textContent = `at $${summary.cost_per_1000} per 1,000 server predictions (settings)`;

  const step = series.step_ms;
  const { times, byKey } = pivot(series.points);
  const labels = times.map((x) => fmtTime(x, step));
  const latency = [];
  let i = 0;
  for (const [key, pts] of byKey) {
    if (![...pts.values()].some((p) => p.events.predict)) continue; // e.g. init events, before a backend is chosen
    const color = COLORS[i % COLORS.length];
    i += 1;
    for (const [q, dash] of [['p50', []], ['p95', [6, 3]], ['p99', [2, 2]]]) {
      latency.push({ label: `${key} ${q}`, data: times.map((x) => (pts.get(x) ? pts.get(x).latency_ms[q] : null)),
        borderColor: color, backgroundColor: color, borderDash: dash, spanGaps: true, pointRadius: 2 });
    }
  }
  chart('c-latency', 'line', { labels, datasets: latency }, { scales: { y: { type: 'logarithmic', title: { display: true, text: 'ms' } } } });

  const tl = total.points;
  const tLabels = tl.map((p) => fmtTime(p.t, total.step_ms));
  chart('c-rate', 'bar', { labels: tLabels, datasets: [{ label: 'predictions', data: tl.map((p) => p.predictions), backgroundColor: COLORS[0] }] });
  chart('c-errors', 'bar', { labels: tLabels, datasets: [
    { label: 'errors', data: tl.map((p) => p.events.error), backgroundColor: COLORS[1] },
    { label: 'fallbacks', data: tl.map((p) => p.events.fallback), backgroundColor: COLORS[3] },
  ] });
  chart('c-memory', 'line', { labels: tLabels, datasets: [
    { label: 'max bytes (MB)', data: tl.map((p) => (p.memory.bytes_max ? p.memory.bytes_max / 1e6 : null)), borderColor: COLORS[4], spanGaps: true },
    { label: 'mean bytes (MB)', data: tl.map((p) => (p.memory.bytes_mean ? p.memory.bytes_mean / 1e6 : null)), borderColor: COLORS[2], spanGaps: true },
  ] });
  const mix = (res) => ({ labels: res.groups.map((g) => String(g.key || 'unknown')),
    datasets: [{ data: res.groups.map((g) => g.count), backgroundColor: res.groups.map((_, k) => COLORS[k % COLORS.length]) }] });
  chart('c-backends', 'doughnut', mix(backends));
  chart('c-devices', 'doughnut', mix(devices));

  const entry = (registry.models || []).find((m) => m.name === model);
  const channels = entry ? entry.channels : {};
  // Version 0 = events sent before the manifest arrived (init): not a published version.
  const rows = versions.groups.filter((g) => g.key).map((g) => {
    const on = Object.entries(channels).filter(([, s]) => s.version === g.key || s.base_version === g.key)
      .map(([c, s]) => `${c} ${s.version === g.key ? s.percent : 100 - s.percent}%`).join(', ');
    const tr = document.createElement('tr');
    for (const cell of [`v${g.key}`, g.count, g.predictions, fmtMs(g.latency_ms.p95), fmtPct(g.error_rate), on || '–']) {
      const td = document.createElement('td');
      td.textContent = String(cell);
      tr.append(td);
    }
    return tr;
  });
  $('#versions tbody').replaceChildren(...rows);
}

function start() {
  token = readToken();
  if (params.get('window')) $('#window').value = params.get('window');
  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('#token').value.trim();
    sessionStorage.setItem('browserml:token', token);
    $('#login').hidden = true;
    $('#main').hidden = false;
    refresh();
  });
  for (const id of ['#model', '#window', '#group']) $(id).addEventListener('change', refresh);
  refresh();
  setInterval(refresh, Math.max(1, refreshS) * 1000);
}

start();
