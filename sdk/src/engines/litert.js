/**
 * The LiteRT.js engine (`@litertjs/core`, Google's runtime for TFLite models on the web): same
 * methods as engines/tfjs.js (init, availableBackends, useBackend, loadModel, predict, warmup,
 * health, memory, reset, disposeModel, threadsUsed), so the runtime treats it as more candidates.
 *
 * Loading, from our own /vendor (never a CDN), lazily — nothing here runs until the runtime decides
 * to try LiteRT.js:
 * - `@litertjs/core/dist/index.js` imports the bare specifier "@litertjs/wasm-utils", which only an
 *   import map resolves, and module workers have no import maps. So the module text is fetched,
 *   that one specifier is rewritten to the vendored URL and the result imported from a Blob URL:
 *   the same code path on a page and in the SDK's module worker, with nothing asked of the host page.
 * - LiteRT.js then loads its emscripten glue as a classic script (a <script> tag on a page,
 *   `importScripts` in a worker). Module workers refuse `importScripts`, so inside a worker it is
 *   stood in for by a synchronous fetch + global eval for the duration of the load, and emscripten
 *   is told where its wasm and its pthread script live (in a worker it would otherwise look next to
 *   the SDK's worker script).
 * - threads when the context is crossOriginIsolated (and relaxed SIMD is there, which LiteRT.js
 *   requires for its threaded build): the device's cores (navigator.hardwareConcurrency, at most
 *   16), or the `threads` option. On a 16-core machine 16 threads ran MobileNetV2 224 in 3.4-4.2 ms
 *   against 4.5-5.4 ms at the former cap of 4.
 * - backends: `wasm` (XNNPACK on the CPU) and `webgpu` (LiteRT.js's GPU accelerator), offered only
 *   on a hardware adapter (gpu.js); the SDK requests the device itself so that a lost device is
 *   seen (`health()`), and reads outputs back with `Tensor.data()` (a GPU tensor has no
 *   synchronous view).
 *
 * Model bytes come from the loader (verified sha256, Cache API) as a Uint8Array; LiteRT.js never
 * fetches a model itself. Every Tensor — inputs and outputs — is deleted after each call, so the
 * wasm heap does not grow with the number of predictions.
 * @module engines/litert
 */

import { EngineError, LoadError } from '../errors.js';
import { wasmFeatures } from '../device.js';
import { toInputArray } from '../preprocess.js';
import { adapterFacts, gpuFactsOnce } from '../gpu.js';

export const VERSION = '2.5.3';
export const CORE = '@litertjs/core/dist/index.js';
export const WASM_UTILS = '@litertjs/wasm-utils/dist/index.js';
export const WASM_DIR = '@litertjs/core/wasm/';
/** Backends this engine runs. */
export const BACKENDS = Object.freeze(['wasm', 'webgpu']);
/** WebGPU features LiteRT.js uses when the adapter has them (as its own default device asks). */
const GPU_FEATURES = ['shader-f16', 'subgroups'];
const BARE_IMPORT = /from\s*(["'])@litertjs\/wasm-utils\1/g;

/** One LiteRT.js module instance (and so one wasm runtime) per JS realm, by vendor URL. */
const modules = new Map();
/** Characters of the LiteRT.js module text fetched, by vendor URL (what a prefetch reports). */
const coreBytes = new Map();

/**
 * Rewrite the bare "@litertjs/wasm-utils" import of LiteRT.js's ESM bundle to an absolute URL
 * and drop its relative source-map comment (meaningless under a blob: URL).
 * @param {string} source text of @litertjs/core/dist/index.js
 * @param {string} wasmUtilsUrl absolute URL of @litertjs/wasm-utils/dist/index.js
 * @returns {string}
 */
export function rewriteCoreModule(source, wasmUtilsUrl) {
  const out = source.replace(BARE_IMPORT, `from ${JSON.stringify(wasmUtilsUrl)}`);
  if (out === source) throw new LoadError('LiteRT.js bundle has no "@litertjs/wasm-utils" import to rewrite (unexpected version?)', 'runtime');
  return out.replace(/\n\/\/# sourceMappingURL=.*$/m, '\n');
}

/**
 * The glue script LiteRT.js will pick (same rule as its load()): threaded when threads are asked
 * for, plain with relaxed SIMD, compat otherwise.
 * @param {{relaxedSimd: boolean}} features @param {boolean} threads
 */
export function glueFile(features, threads) {
  if (!features.relaxedSimd) return 'litert_wasm_compat_internal.js';
  return threads ? 'litert_wasm_threaded_internal.js' : 'litert_wasm_internal.js';
}

/**
 * Threads LiteRT.js should run: 1 without isolation or relaxed SIMD, else the user's number or
 * the device's cores, at most MAX_THREADS.
 * @param {ReturnType<typeof wasmFeatures>} features @param {number} [asked]
 */
export function litertThreads(features, asked) {
  if (!features.threads || !features.relaxedSimd) return 1;
  return Math.max(1, Math.min(asked || features.cores || 1, MAX_THREADS));
}

/** LiteRT.js's thread pool is sized at start; more than 16 wasm workers only adds start-up cost. */
export const MAX_THREADS = 16;

/** Import the rewritten LiteRT.js module once per vendor URL. @param {string} vendor */
function importCore(vendor) {
  if (!modules.has(vendor)) {
    const coreUrl = new URL(CORE, vendor).href;
    const load = (async () => {
      const response = await fetch(coreUrl, { credentials: 'same-origin' });
      if (!response.ok) throw new Error(`HTTP ${response.status} from ${coreUrl}`);
      const source = await response.text();
      coreBytes.set(vendor, source.length);
      const text = rewriteCoreModule(source, new URL(WASM_UTILS, vendor).href);
      const url = URL.createObjectURL(new Blob([text], { type: 'text/javascript' }));
      try {
        return await import(/* webpackIgnore: true */ url);
      } finally {
        URL.revokeObjectURL(url);
      }
    })();
    modules.set(vendor, load);
    load.catch(() => modules.delete(vendor));
  }
  return modules.get(vendor);
}

/**
 * Bring LiteRT.js's module code down without starting it: its ES module (rewritten, imported) and
 * the wasm-utils module it imports — the serial round trips before its wasm can be asked for.
 * The 9.4 MB wasm itself is not prefetched: on a 2-core machine fetching it beside a 25 MB model
 * made the cold first answer slower (BENCHMARKS.md, issue 18), and when the manifest then starts
 * another engine it would be wasted. Nothing is compiled or instantiated and no thread is
 * spawned. Never throws (a failed prefetch leaves the start as it was).
 * @param {{vendor: string, lib?: any}} opts
 * @returns {Promise<{ok: boolean, bytes: number, error?: string}>} bytes: of the module text
 */
export async function prefetchLitert(opts) {
  if (opts.lib) return { ok: true, bytes: 0 };
  const vendor = new URL(opts.vendor || '/vendor/', globalThis.location ? globalThis.location.href : undefined).href;
  try {
    await importCore(vendor);
    return { ok: true, bytes: coreBytes.get(vendor) || 0 };
  } catch (err) {
    return { ok: false, bytes: 0, error: String(err && err.message ? err.message : err) };
  }
}

/**
 * Run `fn` (which calls loadLiteRt) with what a module worker lacks: a working importScripts and
 * emscripten told where its files are. On a page, `fn` runs as it is.
 * @param {string} wasmDir absolute URL ending in "/"
 * @param {string} file glue script name
 * @param {() => Promise<any>} fn
 */
async function withWorkerGlue(wasmDir, file, fn) {
  const g = globalThis;
  if (typeof g.document !== 'undefined' || typeof g.importScripts !== 'function') return fn();
  const original = g.importScripts;
  g.importScripts = (url) => {
    const xhr = new XMLHttpRequest();
    xhr.open('GET', String(url), false); // allowed in workers; this is what importScripts does too
    xhr.send();
    if (xhr.status !== 200) throw new Error(`HTTP ${xhr.status} from ${url}`);
    (0, eval)(`${xhr.responseText}\n//# sourceURL=${url}`); // eslint-disable-line no-eval
  };
  g.Module = { locateFile: (path) => wasmDir + path, mainScriptUrlOrBlob: wasmDir + file };
  try {
    return await fn();
  } finally {
    g.importScripts = original;
  }
}

export class LitertEngine {
  /**
   * @param {{vendor?: string, threads?: number, features?: ReturnType<typeof wasmFeatures>, lib?: any}} [opts]
   *   lib: the `@litertjs/core` namespace when a bundler resolved it (then its wasm still comes
   *   from /vendor)
   */
  constructor(opts = {}) {
    this.name = 'litert';
    this.bundledLib = opts.lib || null;
    this.vendor = new URL(opts.vendor || '/vendor/', globalThis.location ? globalThis.location.href : undefined).href;
    this.askedThreads = opts.threads;
    this.features = opts.features || wasmFeatures();
    this.threads = litertThreads(this.features, this.askedThreads);
    /** @type {any} the LiteRT.js module namespace */
    this.lib = null;
    this.runtime = null;
    /** The backend models are compiled for. */
    this.active = 'wasm';
    /** Set when the WebGPU device is lost. */
    this.lost = null;
    this._device = null;
    /** Tensors created and not yet deleted (0 between calls). */
    this.live = 0;
    this._init = null;
  }

  /** @returns {string} */
  get version() {
    return VERSION;
  }

  /** Download (9.4 MB wasm) and start LiteRT.js once. */
  init() {
    if (!this._init) {
      this._init = this._start().catch((err) => {
        this._init = null;
        throw err instanceof LoadError ? err : new LoadError(`cannot load LiteRT.js: ${err && err.message ? err.message : err}`, 'runtime');
      });
    }
    return this._init;
  }

  async _start() {
    if (!this.features.wasm) throw new LoadError('no WebAssembly here', 'runtime');
    this.lib = this.bundledLib || await importCore(this.vendor);
    const wasmDir = new URL(WASM_DIR, this.vendor).href;
    const useThreads = this.threads > 1;
    this.runtime = this.lib.getGlobalLiteRt && safe(() => this.lib.getGlobalLiteRt());
    if (!this.runtime) {
      const pending = safe(() => this.lib.getGlobalLiteRtPromise());
      this.runtime = await (pending || withWorkerGlue(wasmDir, glueFile(this.features, useThreads),
        () => this.lib.loadLiteRt(wasmDir, { threads: useThreads })));
    }
    return this;
  }

  /**
   * wasm always (with WebAssembly); webgpu when the browser grants a hardware adapter (a software
   * one, SwiftShader, is not offered: see gpu.js).
   */
  async availableBackends() {
    if (!this.features.wasm) return [];
    const facts = await gpuFactsOnce();
    return facts.webgpu && !facts.webgpu.software ? ['wasm', 'webgpu'] : ['wasm'];
  }

  /** @param {string} name */
  async useBackend(name) {
    if (!BACKENDS.includes(name)) throw new EngineError(`LiteRT.js backend ${name} is not supported by the SDK`, 'backend-init');
    await this.init();
    if (name === 'webgpu') await this._gpuDevice();
    this.active = name;
  }

  /**
   * The WebGPU device LiteRT.js runs on, requested once by the SDK (high-performance adapter,
   * refused when it is a fallback / software adapter) and handed to LiteRT.js, so that its loss is
   * seen: `health()` then reports it and the runtime moves to another candidate.
   */
  _gpuDevice() {
    if (!this._device) {
      this._device = (async () => {
        const gpu = globalThis.navigator && globalThis.navigator.gpu;
        if (!gpu) throw new EngineError('no WebGPU here (navigator.gpu missing)', 'backend-init');
        const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
        if (!adapter) throw new EngineError('no WebGPU adapter', 'backend-init');
        const facts = adapterFacts(adapter);
        if (facts.software) throw new EngineError(`WebGPU adapter is a software one (${facts.vendor} ${facts.architecture})`, 'backend-init');
        const limits = {};
        for (const k of ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxStorageBuffersPerShaderStage', 'maxTextureDimension2D']) {
          if (adapter.limits && Number.isFinite(adapter.limits[k])) limits[k] = adapter.limits[k];
        }
        const features = [...(adapter.features || [])].filter((f) => GPU_FEATURES.includes(f));
        const device = await adapter.requestDevice({ requiredLimits: limits, requiredFeatures: features });
        device.lost.then((info) => { this.lost = `WebGPU device lost: ${info && info.message ? info.message : 'unknown'}`; });
        this.lib.setWebGpuDevice(device);
        this.adapter = facts;
        return device;
      })();
      this._device.catch(() => { this._device = null; });
    }
    return this._device;
  }

  /** @returns {string} */
  backend() {
    return this.active;
  }

  /**
   * A compiled model keeps the accelerator it was compiled for: models on wasm and on WebGPU run
   * side by side with no backend switch (what the upgrade's paired timing relies on).
   */
  get backendPerModel() {
    return true;
  }

  /** @returns {number} */
  threadsUsed() {
    return this.active === 'webgpu' ? 1 : this.threads;
  }

  /**
   * Compile a verified .tflite (loader.buildTfliteArtifacts) for the active backend. An op
   * LiteRT.js cannot run (on wasm, or on the GPU accelerator) fails here.
   * @param {{format: string, model: Uint8Array}} artifacts
   * @returns {Promise<{compiled: any, accelerator: string}>}
   */
  async loadModel(artifacts) {
    if (!artifacts || artifacts.format !== 'tflite') throw new LoadError('LiteRT.js needs a .tflite variant', 'format');
    await this.init();
    const accelerator = this.active;
    const options = accelerator === 'webgpu' ? { accelerator } : { accelerator, cpuOptions: { numThreads: this.threads } };
    try {
      return { compiled: await this.lib.loadAndCompile(artifacts.model, options), accelerator };
    } catch (err) {
      throw new LoadError(`LiteRT.js could not compile the model for ${accelerator}: ${err && err.message ? err.message : err}`, 'format');
    }
  }

  /**
   * One probability vector per image; the TFLite export is pinned to batch 1, so a batch is a loop.
   * @param {any} model @param {ImageData[]} images @param {object} spec manifest input
   * @returns {Promise<Float32Array[]>}
   */
  async predict(model, images, spec) {
    const rows = [];
    for (const img of images) rows.push(await this._run(model, toInputArray(img, spec), spec));
    return rows;
  }

  /** One prediction on zeros (what selection times). @param {any} model @param {object} spec */
  async warmup(model, spec) {
    return [await this._run(model, new Float32Array(spec.height * spec.width * (spec.channels || 3)), spec)];
  }

  async _run(model, data, spec) {
    let input = null;
    let outputs = null;
    try {
      input = new this.lib.Tensor(data, [1, spec.height, spec.width, spec.channels || 3]);
      this.live += 1;
      outputs = await model.compiled.run([input]);
      this.live += outputs.length;
      return Float32Array.from(model.accelerator === 'webgpu' ? await outputs[0].data() : outputs[0].toTypedArray());
    } catch (err) {
      throw new EngineError(`LiteRT.js prediction failed: ${err && err.message ? err.message : err}`, 'predict');
    } finally {
      if (input) this._delete(input);
      if (outputs) for (const t of outputs) this._delete(t);
    }
  }

  _delete(tensor) {
    try {
      tensor.delete();
    } finally {
      this.live -= 1;
    }
  }

  /** Null, or why the backend cannot be trusted: a lost WebGPU device (wasm reports by throwing). */
  health() {
    return this.active === 'webgpu' && this.lost ? this.lost : null;
  }

  /**
   * numTensors: live LiteRT.js tensors (0 between calls); wasmHeapBytes: the wasm heap. The heap is
   * reported under its own name, not `numBytes`, because a wasm heap never shrinks: a byte budget
   * on it could only trigger rebuilds that free nothing. Growth across calls is what to watch.
   */
  memory() {
    let wasmHeapBytes = 0;
    try {
      wasmHeapBytes = this.runtime.liteRtWasm.HEAPU8.buffer.byteLength;
    } catch { /* not started */ }
    return { numTensors: this.live, wasmHeapBytes };
  }

  /** @param {any} model */
  disposeModel(model) {
    try {
      if (model) model.compiled.delete();
    } catch { /* already deleted */ }
  }

  /** Nothing to reset: models are deleted one by one and the wasm heap cannot shrink. */
  async reset() {}
}

function safe(fn) {
  try {
    return fn();
  } catch {
    return null;
  }
}
