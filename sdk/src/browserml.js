/**
 * BrowserML browser SDK — entry point.
 *
 * ```js
 * import { BrowserML } from '/sdk/browserml.js';
 * const clf = await BrowserML.load({ model: 'digits' });          // server defaults to this origin
 * const { labels, ms, backend, variant, version, engine } = await clf.classify(file, { topK: 3 });
 * ```
 *
 * What `load` does for you: fetches the manifest, takes model files from the Cache API (keyed by
 * sha256; verified) or the network (verified before use), tries variants uint8 -> float16 -> float32,
 * times the available backends within 1.5 s and keeps the fastest (remembered per device and model
 * version), warms up, and watches memory. Results are plain objects; no tensor ever leaves the SDK.
 *
 * Two engines, TF.js and LiteRT.js (wasm or WebGPU): the first answer comes from what starts
 * soonest (the remembered choice, else the cheapest to start; never a GPU's shader compile, never
 * a software GPU), then the other candidates are measured in idle time and the fastest kept —
 * remembered per device and model version (runtime.js, start.js, upgrade.js). Results carry
 * `engine`, `backend`, `variant` and `threads`.
 *
 * One instance per model per page: loading the same (server, model, channel, worker mode) again
 * returns the same classifier (reference-counted; `dispose` frees it when the last user is done).
 *
 * Progress: `load({onProgress})` gets every progress event of the load (bytes done / total per
 * file and overall, from the network or the cache, integrity checks, compile and warm-up; see
 * progress.js); the classifier is an EventTarget that dispatches the same as `progress` events
 * (`CustomEvent.detail`) for later loads (the LiteRT.js upgrade, a rebuild).
 * @module browserml
 */

import { ChoiceStore } from './selection.js';
import { Runtime } from './runtime.js';
import { WorkerClassifier } from './worker.js';

export { BrowserMLError, EngineError, InputError, IntegrityError, LoadError } from './errors.js';
// Telemetry HTTP sink (issue 9): `telemetry: httpSink()` posts events to /v1/telemetry.
export { HttpSink, httpSink } from './sinks/http.js';
export { STEP_BYTES as PROGRESS_STEP_BYTES } from './progress.js';

const instances = new Map();

/** localStorage or null (workers, disabled storage). */
function localStore() {
  try {
    return globalThis.localStorage || null;
  } catch {
    return null;
  }
}

/** A stable random id for canary bucketing, kept in localStorage. */
export function clientId() {
  const ls = localStore();
  try {
    let id = ls && ls.getItem('browserml:client');
    if (!id) {
      id = globalThis.crypto.randomUUID();
      if (ls) ls.setItem('browserml:client', id);
    }
    return id;
  } catch {
    return undefined;
  }
}

/** ChoiceStore plus the listing the worker needs. */
class PageStore extends ChoiceStore {
  /** Every remembered choice for a model (keys contain ":<model>:"). */
  entries(model) {
    const out = {};
    try {
      for (let i = 0; i < this.storage.length; i += 1) {
        const k = this.storage.key(i);
        if (k && k.startsWith('browserml:choice:') && k.includes(`:${model}:`)) out[k] = this.get(k);
      }
    } catch { /* no storage */ }
    return out;
  }
}

/**
 * Build one sink function from the `telemetry` option (function, {send}, or array).
 * @param {any} telemetry
 */
function sinkOf(telemetry) {
  if (!telemetry) return null;
  const list = Array.isArray(telemetry) ? telemetry : [telemetry];
  return (event) => {
    for (const s of list) {
      try {
        if (typeof s === 'function') s(event);
        else if (s && typeof s.send === 'function') s.send(event);
      } catch { /* a sink must not break classification */ }
    }
  };
}

/**
 * Load a classifier.
 * @param {import('./runtime.js').LoadOptions & {worker?: boolean, telemetry?: any, shared?: boolean,
 *   onProgress?: (event: import('./progress.js').ProgressEvent) => void}} options
 *   `worker: true` runs inference in a Web Worker; `telemetry` is a sink (function, {send}, array);
 *   `shared: false` opts out of the one-instance-per-page sharing (benchmarks, tests);
 *   `onProgress` receives the load's progress events (a second `load` of a shared classifier
 *   still loading receives the rest of them).
 * @returns {Promise<Classifier>}
 */
export async function load(options) {
  if (!options || !options.model) throw new TypeError('BrowserML.load({model, server?, channel?}) needs a model name');
  const { telemetry, worker = false, shared = true, onProgress, ...rest } = options;
  if (worker && rest.runtimes) throw new TypeError('BrowserML.load: worker mode loads its runtimes from /vendor/; drop `runtimes` or `worker`');
  const server = rest.server || (globalThis.location && globalThis.location.origin);
  const key = `${server}|${rest.model}|${rest.channel || 'stable'}|${worker ? 'worker' : 'page'}`;
  if (shared && instances.has(key)) {
    const entry = instances.get(key);
    entry.refs += 1;
    if (typeof onProgress === 'function') entry.listeners.add(onProgress);
    return entry.promise;
  }
  const loadOptions = { ...rest, server, clientId: rest.clientId || clientId() };
  const store = new PageStore(localStore());
  const sink = sinkOf(telemetry);
  const listeners = new Set(typeof onProgress === 'function' ? [onProgress] : []);
  let classifier = null;
  const progress = (event) => {
    for (const fn of listeners) {
      try { fn(event); } catch { /* a listener must not break a load */ }
    }
    if (classifier) classifier._progress(event);
  };
  const promise = (async () => {
    const impl = worker
      ? new WorkerClassifier(loadOptions, { store, sink, progress })
      : new Runtime(loadOptions, { store, sink, progress });
    await impl.load();
    listeners.clear(); // later loads reach the classifier's own 'progress' listeners
    classifier = new Classifier(impl, () => {
      if (!shared) return true;
      const entry = instances.get(key);
      if (!entry) return true;
      entry.refs -= 1;
      if (entry.refs > 0) return false;
      instances.delete(key);
      return true;
    });
    return classifier;
  })();
  if (shared) {
    instances.set(key, { promise, refs: 1, listeners });
    promise.catch(() => instances.delete(key));
  }
  return promise;
}

/**
 * The object users hold: a thin facade over the page runtime or the worker proxy. An EventTarget:
 * `progress` events (CustomEvent, `detail` as in progress.js) for loads after `load` resolved.
 */
export class Classifier extends EventTarget {
  /** @param {Runtime | WorkerClassifier} impl @param {() => boolean} release */
  constructor(impl, release) {
    super();
    this._impl = impl;
    this._release = release;
  }

  /** @param {import('./progress.js').ProgressEvent} detail */
  _progress(detail) {
    try {
      this.dispatchEvent(new CustomEvent('progress', { detail }));
    } catch { /* a listener must not break a load */ }
  }

  /**
   * @param {File | Blob | ImageBitmap | ImageData | HTMLImageElement | HTMLCanvasElement} input
   * @param {{topK?: number}} [opts]
   * @returns {Promise<{labels: {label: string, p: number}[], ms: number, backend: string,
   *   variant: string, version: number, engine: string, threads: number}>}
   */
  classify(input, opts) {
    return this._impl.classify(input, opts);
  }

  /**
   * Several images in one batch; a bad input gets `{error}` in its slot, the rest still classify.
   * @param {any[]} inputs @param {{topK?: number}} [opts]
   */
  classifyBatch(inputs, opts) {
    return this._impl.classifyBatch(inputs, opts);
  }

  /**
   * The upgrade's outcome, once decided: `{state, reason, results, skipped, ...}` with state
   * skipped | kept | switched | failed | remembered (other candidates measured in idle time
   * against the current path). It starts by itself after the first prediction; calling this
   * starts it earlier. Never rejects (failures are fallbacks).
   * @returns {Promise<object>}
   */
  upgraded() {
    return this._impl.upgraded();
  }

  /**
   * Time the current path at batch sizes 1, 8 and 32 (ms per image) and let `classifyBatch` use
   * the best from then on (remembered with the choice). Predictions wait while it runs.
   * @param {number[]} [sizes]
   * @returns {Promise<{sizes: Record<string, number>, best: number}>}
   */
  measureBatches(sizes) {
    return this._impl.measureBatches(sizes);
  }

  /** Latency, memory, engine/backend/variant/threads, wasm features (int8Dot), choice, upgrade, fallbacks. A plain object (a Promise in worker mode). */
  stats() {
    return this._impl.stats();
  }

  /** Free rebuilds: drop every backend buffer and reload the model from cache (memory guard uses it). */
  rebuild(reason) {
    return this._impl.rebuild ? this._impl.rebuild(reason) : Promise.resolve();
  }

  /** Release this reference; the model is freed when the last holder disposes. */
  async dispose() {
    if (this._disposed) return;
    this._disposed = true;
    if (this._release()) await this._impl.dispose();
  }
}

export const BrowserML = Object.freeze({ load });
export default BrowserML;
