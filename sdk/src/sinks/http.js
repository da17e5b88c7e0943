/**
 * HTTP telemetry sink: batches SDK events and posts them to `POST /v1/telemetry` (issue 9).
 *
 * ```js
 * import { BrowserML, httpSink } from '/sdk/browserml.js';
 * const clf = await BrowserML.load({ model: 'digits', telemetry: httpSink() });
 * ```
 *
 * Contract:
 * - `send(event)` is synchronous and O(1): it maps the event to the wire schema and queues it. It
 *   never awaits, never throws, never touches the network — a prediction is never blocked.
 * - The queue is bounded (`maxQueue`, default 2,000): when full the oldest events are dropped and
 *   counted in `dropped`, so a page that cannot reach the server does not grow memory.
 * - Every `intervalMs` (default 10 s), or as soon as `maxBatch` (500) events are queued, one batch
 *   goes out with `fetch` (`keepalive`, `text/plain`, so no CORS preflight). A network error, 429 or
 *   5xx puts the batch back (if there is room) and doubles the wait, up to 5 minutes, at most
 *   `maxAttempts` (default 6) times, after which the batch is dropped (counted); 4xx other than 429
 *   means the server rejected the batch as malformed, and it is dropped at once, never retried.
 * - Text is cut on code points and made well-formed (a lone UTF-16 surrogate becomes U+FFFD), so
 *   cutting a long error message through an emoji cannot make a batch the server must refuse.
 * - Batches carry `?client=<id>`: a random id kept in localStorage (or per page without it), so
 *   the server rate-limits each browser on its own even behind a shared proxy and can count
 *   distinct clients. Pass `clientId` to use your own (8-64 of [A-Za-z0-9_-]).
 * - Every batch carries an idempotency key (`?batch=<uuid>`); a retried batch keeps its key, so
 *   when an answer was lost after the server committed (an instance killed, a balancer timeout)
 *   the server stores the batch once (issue 20).
 * - On `pagehide` (and when the page becomes hidden) everything queued goes with
 *   `navigator.sendBeacon` as `text/plain`, split into bodies under 60 KB (the beacon quota).
 *
 * The server's schema (`src/browserml/telemetry/schema.py`) is strict (unknown fields are refused),
 * so `toWire` keeps only the fields it knows and renames camelCase ones.
 * @module sinks/http
 */

const TYPES = new Set(['init', 'load', 'predict', 'error', 'fallback', 'memory']);
const LABEL = /^[A-Za-z0-9_.:/+-]{0,32}$/;
const BEACON_BYTES = 60000;
const MAX_BACKOFF_MS = 300000;
const CLIENT_KEY = 'browserml:client';

/**
 * Cut `s` to at most `n` UTF-16 units without splitting a surrogate pair, and replace any lone
 * surrogate with U+FFFD (what `String.prototype.toWellFormed` does), so the text is valid Unicode.
 * @param {string} s @param {number} n @returns {string}
 */
export function cutText(s, n) {
  let t = s.length > n ? s.slice(0, n) : s;
  const last = t.charCodeAt(t.length - 1);
  if (t.length < s.length && last >= 0xd800 && last <= 0xdbff) t = t.slice(0, -1);
  return t.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

/** @param {any} g global @returns {string} this browser's telemetry client id (random, kept) */
export function defaultClientId(g = globalThis) {
  const fresh = () => (g.crypto && g.crypto.randomUUID ? g.crypto.randomUUID() : `${Date.now()}-${Math.random()}`.replace(/\./g, '')).replace(/[^A-Za-z0-9_-]/g, '');
  try {
    const kept = g.localStorage && g.localStorage.getItem(CLIENT_KEY);
    if (kept && /^[A-Za-z0-9_-]{8,64}$/.test(kept)) return kept;
    const id = fresh();
    if (g.localStorage) g.localStorage.setItem(CLIENT_KEY, id);
    return id;
  } catch {
    return fresh(); // storage blocked (private mode, sandboxed frame)
  }
}

/** @param {any} v */
function label(v) {
  if (v === undefined || v === null) return undefined;
  const s = String(v).slice(0, 32);
  return LABEL.test(s) ? s : s.replace(/[^A-Za-z0-9_.:/+-]/g, '_');
}

/** @param {any} v */
function millis(v) {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.min(v, 3600000) : undefined;
}

/** @param {any} v */
function count(v) {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : undefined;
}

/**
 * Map one SDK telemetry event (see telemetry.js) onto the server's wire schema. `age_ms` is added
 * when the batch is sent (the SDK emits events as they happen, so queue time is their age).
 * @param {any} e SDK event
 * @returns {object | null} null when the event cannot be expressed (unknown type, no model)
 */
export function toWire(e) {
  if (!e || !TYPES.has(e.type) || typeof e.model !== 'string' || !/^[a-z0-9-]{1,64}$/.test(e.model)) return null;
  const out = { type: e.type, model: e.model };
  if (Number.isInteger(e.version) && e.version >= 0) out.version = e.version;
  for (const k of ['variant', 'engine', 'backend', 'phase', 'code']) {
    const v = label(e[k]);
    if (v) out[k] = v;
  }
  if (typeof e.device === 'string' && e.device) out.device = e.device.slice(0, 64).replace(/[^A-Za-z0-9_.:/+-]/g, '_');
  const ms = millis(e.ms);
  if (ms !== undefined) out.ms = ms;
  if (e.type === 'predict' && Number.isInteger(e.batch) && e.batch >= 1) out.batch = Math.min(e.batch, 10000);
  if (e.type === 'load' && Array.isArray(e.probes)) {
    // Warm-up of the backend that won: the probe of the chosen candidate.
    const won = e.probes.find((p) => p && p.ok && p.candidate && p.candidate.backend === e.backend && p.candidate.variant === e.variant);
    const w = millis(won && won.warmupMs);
    if (w !== undefined) out.warmup_ms = w;
  }
  const mem = e.type === 'memory' ? (e.memory || e.after) : null;
  if (mem) {
    const nt = count(mem.numTensors);
    const nb = count(mem.numBytes);
    const ng = count(mem.numBytesInGPU);
    if (nt !== undefined) out.num_tensors = nt;
    if (nb !== undefined) out.num_bytes = nb;
    if (ng !== undefined) out.num_bytes_gpu = ng;
  }
  const reason = e.reason || e.message;
  if (reason) out.reason = cutText(String(reason), 500);
  if (e.type === 'fallback' && !out.backend && e.fromBackend) out.backend = label(e.fromBackend);
  return out;
}

/** Batches events and sends them home. See the module doc for the contract. */
export class HttpSink {
  /**
   * @param {{url?: string, server?: string, intervalMs?: number, maxBatch?: number, maxQueue?: number,
   *   maxAttempts?: number, clientId?: string | null,
   *   fetch?: typeof fetch, beacon?: (url: string, body: string) => boolean, now?: () => number,
   *   target?: any, listen?: boolean}} [opts]
   */
  constructor(opts = {}) {
    const g = /** @type {any} */ (globalThis);
    const base = opts.server || (g.location && g.location.origin) || '';
    const url = new URL(opts.url || new URL('/v1/telemetry', base || 'http://localhost').href);
    this.clientId = opts.clientId === undefined ? defaultClientId(g) : opts.clientId;
    if (this.clientId) url.searchParams.set('client', this.clientId);
    this.url = url.href;
    this.maxAttempts = opts.maxAttempts ?? 6;
    this.intervalMs = opts.intervalMs ?? 10000;
    this.maxBatch = Math.min(opts.maxBatch ?? 500, 500);
    this.maxQueue = Math.max(opts.maxQueue ?? 2000, this.maxBatch);
    this.fetch = opts.fetch || (g.fetch && g.fetch.bind(g));
    this.beacon = opts.beacon || (g.navigator && g.navigator.sendBeacon ? (u, b) => g.navigator.sendBeacon(u, b) : null);
    this.now = opts.now || (() => (g.performance ? g.performance.now() : Date.now()));
    /** @type {object[]} */
    this.queue = [];
    this.sent = 0;
    this.dropped = 0;
    this.failures = 0;
    this.backoff = this.intervalMs;
    this.inFlight = null;
    this.timer = null;
    this.soon = null;
    this.closed = false;
    this._onHide = () => this.flushBeacon();
    this._onVisibility = () => { if (g.document && g.document.visibilityState === 'hidden') this.flushBeacon(); };
    const target = opts.target || g;
    if (opts.listen !== false && target && target.addEventListener) {
      target.addEventListener('pagehide', this._onHide);
      if (g.document && g.document.addEventListener) g.document.addEventListener('visibilitychange', this._onVisibility);
      this.target = target;
    }
    this._schedule(this.intervalMs);
  }

  /**
   * Queue one SDK event (synchronous, never throws to the caller's benefit: telemetry.js also guards).
   * @param {any} event
   */
  send(event) {
    if (this.closed) return;
    const wire = toWire(event);
    if (!wire) return;
    this.queue.push({ wire, at: this.now(), tries: 0 });
    if (this.queue.length > this.maxQueue) {
      const over = this.queue.length - this.maxQueue;
      this.queue.splice(0, over);
      this.dropped += over;
    }
    if (this.queue.length >= this.maxBatch && !this.soon) {
      this.soon = setTimeout(() => { this.soon = null; this.flush(); }, 0);
    }
  }

  /** Send one batch with fetch now (resolves when answered; never rejects). */
  async flush() {
    if (this.inFlight || !this.queue.length || !this.fetch) return this.inFlight;
    const { batch, key } = this._take(this.maxBatch);
    this.inFlight = (async () => {
      let delivered = false;
      try {
        const res = await this.fetch(batchUrl(this.url, key), {
          method: 'POST', body: this._body(batch), keepalive: true,
          headers: { 'content-type': 'text/plain' }, credentials: 'omit',
        });
        if (res.ok || (res.status >= 400 && res.status < 500 && res.status !== 429)) {
          if (res.ok) this.sent += batch.length;
          else this.dropped += batch.length;
          this.backoff = this.intervalMs;
          delivered = true;
        } else {
          this._requeue(batch, key);
        }
      } catch {
        this._requeue(batch, key);
      } finally {
        this.inFlight = null;
      }
      // More than a batch waiting after a success: keep draining; after a failure wait for the timer.
      if (delivered && this.queue.length >= this.maxBatch) this.flush();
    })();
    return this.inFlight;
  }

  /** Send everything queued with sendBeacon (page going away). Returns whether all was handed over. */
  flushBeacon() {
    if (!this.queue.length) return true;
    if (!this.beacon) {
      this.flush();
      return false;
    }
    let ok = true;
    while (this.queue.length) {
      let n = this._runLength(this.maxBatch);
      let body = this._body(this.queue.slice(0, n));
      while (body.length > BEACON_BYTES && n > 1) {
        n = Math.max(1, Math.floor(n / 2));
        body = this._body(this.queue.slice(0, n));
      }
      const key = this.queue[0].key || newKey();
      let handed = false;
      try { handed = this.beacon(batchUrl(this.url, key), body); } catch { handed = false; }
      if (!handed) {
        ok = false;
        break;
      }
      this.queue.splice(0, n);
      this.sent += n;
    }
    return ok;
  }

  /** Stop timers and listeners; queued events go out by beacon. */
  close() {
    if (this.closed) return;
    this.flushBeacon();
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.soon);
    if (this.target) this.target.removeEventListener('pagehide', this._onHide);
    const g = /** @type {any} */ (globalThis);
    if (g.document && g.document.removeEventListener) g.document.removeEventListener('visibilitychange', this._onVisibility);
  }

  /** Counters for stats pages and tests. */
  stats() {
    return { queued: this.queue.length, sent: this.sent, dropped: this.dropped, failures: this.failures };
  }

  _body(batch) {
    const sentAt = this.now();
    return JSON.stringify(batch.map(({ wire, at }) => ({ ...wire, age_ms: Math.min(86400000, Math.max(0, Math.round(sentAt - at))) })));
  }

  /**
   * Take the next batch off the queue with its idempotency key: a batch that failed before goes
   * again whole (or what is left of it) under its first key, so the server stores it once
   * whichever attempt got through; new events get a new key and never join a keyed batch.
   * @param {number} max
   */
  _take(max) {
    const key = this.queue[0].key || newKey();
    return { batch: this.queue.splice(0, this._runLength(max)), key };
  }

  /** How many queued events form the next batch: the leading run sharing one key (or none). */
  _runLength(max) {
    const key = this.queue[0].key;
    let n = 1;
    while (n < Math.min(max, this.queue.length) && this.queue[n].key === key) n += 1;
    return n;
  }

  _requeue(batch, key) {
    for (const item of batch) item.key = key;
    this.failures += 1;
    this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
    for (const item of batch) item.tries += 1;
    const kept = batch.filter((item) => item.tries < this.maxAttempts);
    this.dropped += batch.length - kept.length;
    batch = kept;
    const room = this.maxQueue - this.queue.length;
    if (room < batch.length) this.dropped += batch.length - Math.max(room, 0);
    if (room > 0) this.queue.unshift(...batch.slice(Math.max(0, batch.length - room)));
  }

  _schedule(ms) {
    if (this.closed) return;
    this.timer = setTimeout(async () => {
      await this.flush();
      this._schedule(this.backoff);
    }, ms);
    if (this.timer && typeof this.timer.unref === 'function') this.timer.unref();
  }
}

/** A random idempotency key for one batch (what the server deduplicates on). */
export function newKey() {
  const c = /** @type {any} */ (globalThis).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

/**
 * The POST URL of one batch: its idempotency key in the query (`?batch=<key>`), not a header, so
 * the request stays CORS-simple (no preflight) and `sendBeacon` can carry it too.
 * @param {string} url @param {string} key
 */
export function batchUrl(url, key) {
  return `${url}${url.includes('?') ? '&' : '?'}batch=${encodeURIComponent(key)}`;
}

/**
 * Convenience factory: `telemetry: httpSink({ server, intervalMs })`.
 * @param {ConstructorParameters<typeof HttpSink>[0]} [opts]
 */
export function httpSink(opts) {
  return new HttpSink(opts);
}
