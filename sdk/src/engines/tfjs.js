/**
 * The TensorFlow.js engine: loads TF.js and its backends from our own server (/vendor, never a
 * CDN), turns model artifacts into a model, and runs predictions.
 *
 * Loading: the UMD bundles are imported with dynamic `import()` — they set `globalThis.tf` — which
 * works the same in a page and in a module worker (where classic `importScripts` is unavailable),
 * needs no bundler and no import map. Backend scripts are imported only when that backend is used:
 * a visit that goes straight to a remembered `wasm` never downloads the WebGPU bundle, and WebGPU is
 * offered only when the browser hands out an adapter.
 *
 * An engine is what the selection picks between; LiteRT.js (engines/litert.js) is the second class
 * with the same methods: init, availableBackends, useBackend, loadModel, predict, warmup, health,
 * memory, reset, disposeModel, threadsUsed.
 * @module engines/tfjs
 */

import { EngineError, LoadError } from '../errors.js';
import { toInputTensor } from '../preprocess.js';
import { registerBrowserMLLayers } from './tfjs-layers.js';

export const SCRIPTS = Object.freeze({
  core: '@tensorflow/tfjs/dist/tf.min.js',
  wasm: '@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js',
  webgpu: '@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js',
});
export const WASM_DIR = '@tensorflow/tfjs-backend-wasm/dist/';

/** TF.js backends this engine knows, in no particular order (selection.js orders them). */
export const BACKENDS = Object.freeze(['webgpu', 'webgl', 'wasm', 'cpu']);

export class TfjsEngine {
  /**
   * @param {{vendor?: string, threads?: number}} [opts] vendor: base URL of the /vendor tree
   */
  constructor(opts = {}) {
    this.name = 'tfjs';
    this.vendor = new URL(opts.vendor || '/vendor/', globalThis.location ? globalThis.location.href : undefined).href;
    this.threads = opts.threads;
    /** @type {any} */
    this.tf = null;
    this._scripts = new Map();
  }

  /** Import a vendored UMD bundle once. @param {string} path */
  _import(path) {
    if (!this._scripts.has(path)) {
      const url = new URL(path, this.vendor).href;
      this._scripts.set(path, import(/* webpackIgnore: true */ url).catch((err) => {
        this._scripts.delete(path);
        throw new LoadError(`cannot load TF.js from ${url}: ${err && err.message ? err.message : err}`, 'runtime');
      }));
    }
    return this._scripts.get(path);
  }

  /** Load TF.js core (with the cpu and webgl backends). Re-uses a page's own `tf` if present. */
  async init() {
    if (!globalThis.tf || !globalThis.tf.version) await this._import(SCRIPTS.core);
    this.tf = globalThis.tf;
    registerBrowserMLLayers(this.tf); // layers Keras models need that tfjs-layers lacks
    // Our own decisions, not TF.js's: the SDK picks the backend, and a page should not see
    // TF.js's "you are using the cpu backend" advice.
    try {
      this.tf.env().set('IS_TEST', false);
    } catch { /* flag unknown: harmless */ }
    return this;
  }

  /** @returns {string} TF.js version */
  get version() {
    return this.tf ? this.tf.version.tfjs : '';
  }

  /**
   * Backends that can start here, found cheaply (no model, no script download): WebGPU when an
   * adapter is granted, WebGL when a context can be created (a flag or a blocklisted GPU says no),
   * wasm when WebAssembly exists, cpu always.
   * @returns {Promise<string[]>}
   */
  async availableBackends() {
    const out = [];
    const nav = globalThis.navigator;
    if (nav && nav.gpu) {
      try {
        if (await nav.gpu.requestAdapter()) out.push('webgpu');
      } catch { /* no adapter */ }
    }
    if (canWebGL()) out.push('webgl');
    if (typeof WebAssembly === 'object') out.push('wasm');
    out.push('cpu');
    return out;
  }

  /**
   * Make `name` the active backend, importing its bundle first when needed.
   * @param {string} name
   */
  async useBackend(name) {
    const tf = this.tf;
    if (name === 'wasm') {
      await this._import(SCRIPTS.wasm);
      if (!this._wasmPathsSet) {
        tf.wasm.setWasmPaths(new URL(WASM_DIR, this.vendor).href);
        if (this.threads) tf.wasm.setThreadsCount(this.threads);
        this._wasmPathsSet = true;
      }
    } else if (name === 'webgpu') {
      await this._import(SCRIPTS.webgpu);
    }
    let ok = false;
    // Only the first start of the wasm backend reads the core count (see coreCountHint).
    const restore = name === 'wasm' && this.threads ? coreCountHint(this.threads) : () => {};
    try {
      ok = await tf.setBackend(name);
      await tf.ready();
    } catch (err) {
      throw new EngineError(`backend ${name} failed to start: ${err && err.message ? err.message : err}`, 'backend-init');
    } finally {
      restore();
    }
    if (!ok || tf.getBackend() !== name) throw new EngineError(`backend ${name} is not available here`, 'backend-init');
  }

  /** @returns {string | null} the active backend */
  backend() {
    return this.tf ? this.tf.getBackend() : null;
  }

  /** Threads the wasm backend runs (1 elsewhere). */
  threadsUsed() {
    try {
      if (this.backend() === 'wasm' && this.tf.wasm && this.tf.wasm.getThreadsCount) return this.tf.wasm.getThreadsCount();
    } catch { /* not initialised */ }
    return 1;
  }

  /**
   * Build a model on the active backend from artifacts (loader.buildArtifacts) through
   * tf.io.fromMemory: the bytes were verified by the loader, TF.js never fetches anything itself.
   * @param {object} artifacts
   * @returns {Promise<any>} a tf.LayersModel or tf.GraphModel
   */
  async loadModel(artifacts) {
    const tf = this.tf;
    const handler = tf.io.fromMemory(artifacts);
    try {
      return artifacts.format === 'graph-model' ? await tf.loadGraphModel(handler) : await tf.loadLayersModel(handler);
    } catch (err) {
      throw new LoadError(`TF.js could not build the model: ${err && err.message ? err.message : err}`, 'format');
    }
  }

  /**
   * Probabilities for a batch of images, one Float32Array per image. The input batch is built in
   * tf.tidy (preprocess.toInputTensor); the output tensor is read and disposed here, so no tensor
   * outlives the call.
   * @param {any} model
   * @param {ImageData[]} images
   * @param {object} spec manifest input
   * @returns {Promise<Float32Array[]>}
   */
  async predict(model, images, spec) {
    const input = toInputTensor(this.tf, images, spec);
    return this._run(model, input);
  }

  /**
   * One prediction on zeros: compiles shaders / warms caches, and is what selection times.
   * @param {any} model @param {{height: number, width: number, channels?: number}} spec
   */
  async warmup(model, spec) {
    const input = this.tf.zeros([1, spec.height, spec.width, spec.channels || 3]);
    return this._run(model, input);
  }

  async _run(model, input) {
    let output;
    try {
      output = this.tf.tidy(() => {
        const y = model.predict(input);
        return Array.isArray(y) ? y[0] : y;
      });
      const flat = await output.data();
      const n = output.shape[0];
      const k = flat.length / n;
      const rows = [];
      for (let i = 0; i < n; i += 1) rows.push(Float32Array.from(flat.subarray(i * k, (i + 1) * k)));
      return rows;
    } catch (err) {
      throw new EngineError(`${this.backend()} prediction failed: ${err && err.message ? err.message : err}`, 'predict');
    } finally {
      input.dispose();
      if (output) output.dispose();
    }
  }

  /**
   * Null when the backend is healthy, else why not (WebGL context lost reads back zeros without
   * throwing, so it must be asked).
   * @returns {string | null}
   */
  health() {
    try {
      if (this.backend() === 'webgl') {
        const gl = this.tf.backend().gpgpu && this.tf.backend().gpgpu.gl;
        if (gl && gl.isContextLost()) return 'WebGL context lost';
      }
    } catch (err) {
      return String(err && err.message ? err.message : err);
    }
    return null;
  }

  /** @returns {{numTensors: number, numBytes: number, numBytesInGPU?: number}} */
  memory() {
    const m = this.tf.memory();
    const out = { numTensors: m.numTensors, numBytes: m.numBytes };
    if (typeof m.numBytesInGPU === 'number') out.numBytesInGPU = m.numBytesInGPU;
    return out;
  }

  /** @param {any} model */
  disposeModel(model) {
    try {
      if (model) model.dispose();
    } catch { /* backend already gone (context lost): nothing to free */ }
  }

  /**
   * Throw away every backend instance (their memory, texture pools and wasm heaps) so the next
   * useBackend starts fresh. The SDK owns the TF.js instance it loads; a page that shares `tf`
   * with the SDK loses its own tensors here too.
   */
  async reset() {
    // Wasm paths/threads are module state of the wasm bundle and survive the reset (setting
    // them again would throw "already initialized"), so _wasmPathsSet stays as it is.
    this.tf.engine().reset();
  }
}

/**
 * TF.js wasm threads. TF.js 4.22's wasm backend (src/cc/backend.cc) computes, when its module
 * starts, `num_cores = emscripten_num_logical_cores() / 2` — navigator.hardwareConcurrency / 2,
 * "many x86-64 processors have 2 threads per core" — and `init_with_threads_count` caps whatever
 * `tf.wasm.setThreadsCount(n)` asked for at that number. On a 2-core device the cap is 1, which is
 * why `setThreadsCount(2)` is accepted and `getThreadsCount()` says 1 (the threaded-SIMD binary is
 * loaded all the same). There is no supported API to lift the cap. When the user asks for
 * `threads` explicitly on a crossOriginIsolated context, the SDK shows the wasm module a
 * hardwareConcurrency of 2 x threads while it starts (an own property on `navigator`, removed right
 * after), so the cap becomes `threads`; by default (no `threads` option) TF.js keeps its own rule.
 * @param {number} threads
 * @returns {() => void} undo
 */
export function coreCountHint(threads) {
  const nav = globalThis.navigator;
  if (!nav || !globalThis.crossOriginIsolated || !(threads > 1)) return () => {};
  const real = nav.hardwareConcurrency || 1;
  if (Math.floor(real / 2) >= threads || Object.prototype.hasOwnProperty.call(nav, 'hardwareConcurrency')) return () => {};
  try {
    Object.defineProperty(nav, 'hardwareConcurrency', { value: threads * 2, configurable: true });
  } catch {
    return () => {};
  }
  return () => {
    delete nav.hardwareConcurrency;
  };
}

/** Whether a WebGL context can be created here (page or worker). */
export function canWebGL() {
  try {
    if (typeof OffscreenCanvas !== 'undefined') {
      const c = new OffscreenCanvas(1, 1);
      const gl = c.getContext('webgl2') || c.getContext('webgl');
      if (gl) {
        const lose = gl.getExtension('WEBGL_lose_context');
        if (lose) lose.loseContext();
        return true;
      }
      return false;
    }
    if (typeof document !== 'undefined') {
      const c = document.createElement('canvas');
      return Boolean(c.getContext('webgl2') || c.getContext('webgl'));
    }
  } catch { /* no WebGL */ }
  return false;
}
