/**
 * Worker mode: the runtime runs in a dedicated module worker so decoding, preprocessing and
 * inference never block the page. This one file is both sides:
 * - imported on the page, `WorkerClassifier` spawns `new Worker(<this file>, {type: "module"})` and
 *   proxies classify/stats/dispose over postMessage;
 * - loaded as the worker, it hosts a `Runtime`.
 *
 * Inputs cross cheaply: a File/Blob is posted as is (decoded in the worker with createImageBitmap);
 * an <img>, canvas or ImageBitmap becomes an ImageBitmap that is *transferred* (zero-copy); ImageData
 * is posted (its buffer cloned). The worker reads pixels through an OffscreenCanvas. Workers have
 * no localStorage, so the page passes the remembered choice in and stores what the worker reports;
 * telemetry events are forwarded to the page's sink.
 * @module worker
 */

import { fromPlain, toPlain } from './errors.js';
import { Runtime } from './runtime.js';

const IN_WORKER = typeof WorkerGlobalScope !== 'undefined' && globalThis instanceof WorkerGlobalScope;

/** Page-side proxy with the same API as the in-page classifier. */
export class WorkerClassifier {
  /**
   * @param {object} options serialisable LoadOptions (no functions)
   * @param {{store: any, sink: (e: object) => void, progress?: (e: object) => void}} deps
   */
  constructor(options, deps) {
    this.worker = new Worker(new URL(import.meta.url), { type: 'module', name: 'browserml' });
    this.store = deps.store;
    this.sink = deps.sink;
    this.progress = deps.progress;
    this.pending = new Map();
    this.nextId = 1;
    this.options = options;
    this.worker.onmessage = (e) => this._onMessage(e.data);
    this.worker.onerror = (e) => {
      const err = new Error(`BrowserML worker failed: ${e.message || 'script error'}`);
      for (const { reject } of this.pending.values()) reject(err);
      this.pending.clear();
    };
  }

  _onMessage(msg) {
    if (msg.kind === 'telemetry') {
      if (this.sink) this.sink(msg.event);
      return;
    }
    if (msg.kind === 'progress') {
      if (this.progress) this.progress(msg.event);
      return;
    }
    if (msg.kind === 'store-set') {
      if (this.store) this.store.set(msg.key, msg.value);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (msg.error) p.reject(fromPlain(msg.error));
    else p.resolve(msg.value);
  }

  _call(op, payload = {}, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, ...payload }, transfer);
    });
  }

  /** Start the runtime in the worker; resolves to its first stats. */
  async load() {
    const storeKeys = {};
    // The worker asks for its choice key after reading the manifest; pass every remembered
    // choice for this model (a handful of keys at most).
    if (this.store && this.store.entries) Object.assign(storeKeys, this.store.entries(this.options.model));
    this.info = await this._call('load', { options: this.options, remembered: storeKeys });
    return this;
  }

  /** @param {any} input @param {{topK?: number}} [opts] */
  async classify(input, opts) {
    const [r] = await this.classifyBatch([input], opts);
    if (r.error) throw r.error;
    return r;
  }

  /** @param {any[]} inputs @param {{topK?: number}} [opts] */
  async classifyBatch(inputs, opts) {
    const transfer = [];
    const items = await Promise.all(inputs.map((x) => toTransferable(x, transfer)));
    const out = await this._call('classifyBatch', { inputs: items, opts }, transfer);
    return out.map((r) => (r.error ? { ...r, error: fromPlain(r.error) } : r));
  }

  /** @returns {Promise<object>} the LiteRT.js upgrade's outcome (see Runtime.upgraded) */
  upgraded() {
    return this._call('upgraded');
  }

  /** @param {number[]} [sizes] @returns {Promise<object>} see Runtime.measureBatches */
  measureBatches(sizes) {
    return this._call('measureBatches', { sizes });
  }

  /** @returns {Promise<object>} note: async in worker mode */
  stats() {
    return this._call('stats');
  }

  async dispose() {
    try {
      await this._call('dispose');
    } finally {
      this.worker.terminate();
    }
  }
}

/**
 * What to post for an input. Blobs and ImageData go as they are (structured clone); anything
 * drawable becomes an ImageBitmap added to `transfer`.
 * @param {any} x
 * @param {Transferable[]} transfer
 */
export async function toTransferable(x, transfer) {
  if ((typeof Blob !== 'undefined' && x instanceof Blob) || (typeof ImageData !== 'undefined' && x instanceof ImageData)) return x;
  if (x == null) return x;
  let bitmap = x;
  if (!(typeof ImageBitmap !== 'undefined' && x instanceof ImageBitmap)) {
    if (typeof HTMLImageElement !== 'undefined' && x instanceof HTMLImageElement && !x.complete) await x.decode();
    bitmap = await createImageBitmap(x, { imageOrientation: 'from-image' });
  }
  transfer.push(bitmap);
  return bitmap;
}

if (IN_WORKER) {
  /** @type {Runtime | null} */
  let runtime = null;
  let remembered = {};
  const store = {
    get: (k) => remembered[k] || null,
    set: (k, v) => {
      remembered[k] = v;
      globalThis.postMessage({ kind: 'store-set', key: k, value: v });
    },
  };
  const sink = (event) => globalThis.postMessage({ kind: 'telemetry', event });
  const progress = (event) => globalThis.postMessage({ kind: 'progress', event });

  globalThis.onmessage = async (e) => {
    const { id, op } = e.data;
    try {
      let value;
      if (op === 'load') {
        remembered = e.data.remembered || {};
        runtime = new Runtime(e.data.options, { store, sink, progress });
        await runtime.load();
        value = runtime.stats();
      } else if (op === 'classifyBatch') {
        const out = await runtime.classifyBatch(e.data.inputs, e.data.opts || {});
        value = out.map((r) => (r.error ? { ...r, error: toPlain(r.error) } : r));
      } else if (op === 'upgraded') {
        value = await runtime.upgraded();
      } else if (op === 'measureBatches') {
        value = await runtime.measureBatches(e.data.sizes);
      } else if (op === 'stats') {
        value = runtime.stats();
      } else if (op === 'dispose') {
        if (runtime) runtime.dispose();
        value = true;
      } else {
        throw new Error(`unknown op ${op}`);
      }
      globalThis.postMessage({ id, value });
    } catch (err) {
      globalThis.postMessage({ id, error: toPlain(err) });
    }
  };
}
