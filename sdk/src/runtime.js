/**
 * The classifier runtime: loads a model once, runs it on an (engine, backend, variant) candidate,
 * predicts, recovers from failures and guards memory. It runs on the page's main thread or inside
 * the SDK's worker (worker.js) unchanged: everything it needs from the page (remembered choices,
 * the telemetry sink) is injected.
 *
 * It is engine-agnostic; the decisions live in small modules:
 * - candidates.js: every (engine, backend, variant) the manifest, browser and options allow;
 * - start.js: which one answers first (remembered, else cheapest to start; no software GPU);
 * - upgrade.js: which others to measure in idle time after the first answer, and when to switch;
 * - engines/: TF.js and LiteRT.js behind one interface, each loaded only when tried.
 * and carries them out in modules of one concern each, functions of the runtime:
 * - starter.js: the start loop (files, build, warm-up until one candidate answers);
 * - upgrader.js: the upgrade in idle time;
 * - lifecycle.js: build, adopt, release what no longer serves, rebuild, dispose;
 * - recovery.js: predictions that move off a failing candidate, and their fallback reports;
 * - gate.js: exclusive work (recovery, rebuild, timing) serialised with predictions.
 * This file holds the classifier's state, its load and its public methods.
 * @module runtime
 */

import { BlobCache } from './cache.js';
import { engineBackends, listCandidates } from './candidates.js';
import { deviceClass, deviceKey, wasmFeatures } from './device.js';
import { EngineError, LoadError, toPlain } from './errors.js';
import { Engines } from './engines/index.js';
import { gpuFactsOnce } from './gpu.js';
import { fetchManifest } from './loader.js';
import { MemoryGuard } from './memory.js';
import { LoadProgress } from './progress.js';
import { decode } from './preprocess.js';
import { DEFAULT_BUDGET_MS, candidateKey, choiceKey, timeRuns } from './selection.js';
import { earlyEngine } from './start.js';
import { LatencyStats, median, topK } from './stats.js';
import { Telemetry } from './telemetry.js';
import { DEFAULT_UPGRADE_BUDGET_MS } from './upgrade.js';
import { scheduleUpgrade, upgradeEnd } from './upgrader.js';
import { batchChunks, bestBatch, defaultBatch } from './batching.js';
import { Gate } from './gate.js';
import * as lifecycle from './lifecycle.js';
import * as recovery from './recovery.js';
import * as starter from './starter.js';

export { checkOutputs } from './recovery.js';

/**
 * @typedef {object} LoadOptions
 * @property {string} [server] base URL of the model server (default: the page's origin)
 * @property {string} model model name
 * @property {string} [channel] release channel (default "stable")
 * @property {string} [clientId] opaque id for canary bucketing (the SDK keeps one in localStorage)
 * @property {string} [vendor] base URL of vendored runtimes (default `${server}/vendor/`)
 * @property {{tf?: any, tfWasm?: any, litert?: any}} [runtimes] runtimes your bundler resolved
 *   (`import * as tf from '@tensorflow/tfjs'`, `@tensorflow/tfjs-backend-wasm`, `@litertjs/core`):
 *   used instead of loading them from /vendor (their wasm binaries still come from there)
 * @property {string} [wasmPaths] where TF.js's wasm binaries are (default the vendor tree)
 * @property {string[]} [backends] only consider these backends
 * @property {string[]} [variants] only consider these variants
 * @property {string[]} [engines] only consider these engines ("tfjs", "litert")
 * @property {number} [selectionBudgetMs] time for timing one candidate against the current one (default 1500)
 * @property {number} [upgradeBudgetMs] idle time for measuring alternatives, compile included (default 4000)
 * @property {boolean} [remember] reuse / store the measured choice (default true)
 * @property {number | object} [memoryBudget] bytes, or {numBytes, numBytesInGPU, numTensors}
 * @property {number} [memoryCheckEvery] predictions between memory checks (default 100)
 * @property {number} [maxPixels] decode cap for huge images (default 4 MP)
 * @property {boolean} [cache] use the Cache API (default true)
 * @property {number} [threads] wasm threads to ask for (TF.js: see engines/tfjs.js coreCountHint;
 *   LiteRT.js: default the device's cores when crossOriginIsolated)
 * @property {'auto' | 'force' | 'off'} [litert] LiteRT.js in the upgrade (default "auto": measured
 *   where usable; "force": switched to whenever it runs; "off": never loaded)
 * @property {number} [litertMinMs] download gate: an engine not loaded yet is fetched only when the
 *   current path needs at least this many ms a prediction (default 10)
 * @property {number} [predictSampleRate] fraction of predict events sent to telemetry (default 1)
 */

export class Runtime {
  /**
   * @param {LoadOptions} options
   * @param {{store?: {get(k: string): any, set(k: string, v: any): void}, sink?: any,
   *   engineFactory?: () => any, litertFactory?: () => any, cache?: BlobCache | null,
   *   fetch?: typeof fetch, gpu?: () => Promise<import('./gpu.js').GpuFacts>,
   *   progress?: (event: import('./progress.js').ProgressEvent) => void}} [deps]
   *   progress: called with load progress (see progress.js), at load and on later loads
   */
  constructor(options, deps = {}) {
    if (!options || !options.model) throw new TypeError('BrowserML.load needs {model}');
    const origin = globalThis.location ? globalThis.location.origin : undefined;
    this.options = {
      channel: 'stable', selectionBudgetMs: DEFAULT_BUDGET_MS, upgradeBudgetMs: DEFAULT_UPGRADE_BUDGET_MS,
      remember: true, cache: true, ...options,
    };
    this.server = new URL(this.options.server || origin || '', origin).href;
    this.store = deps.store || null;
    this.cache = this.options.cache === false ? null : (deps.cache !== undefined ? deps.cache : new BlobCache());
    this.fetch = deps.fetch;
    /** What wasm engines can use on this device (threads, relaxed SIMD, int8 dot product, cores). */
    this.features = wasmFeatures();
    const vendor = this.options.vendor || new URL('vendor/', this.server.endsWith('/') ? this.server : `${this.server}/`).href;
    const factories = {};
    if (deps.engineFactory) factories.tfjs = deps.engineFactory;
    if (deps.litertFactory) factories.litert = deps.litertFactory;
    this.engines = new Engines({
      vendor, threads: this.options.threads, features: this.features, factories,
      runtimes: this.options.runtimes, wasmPaths: this.options.wasmPaths,
    });
    /** Bytes, integrity, compile and warm-up progress of every model load (progress.js). */
    this.progress = new LoadProgress(deps.progress);
    this._gpu = deps.gpu || (() => gpuFactsOnce());
    /** The engine of the current candidate. */
    this.engine = null;
    /** What happened after the first answer: state none | skipped | pending | loading | switched | kept | failed | remembered. */
    this.upgrade = { state: 'none', reason: 'no prediction yet' };
    this._upgradePromise = null;
    this.telemetry = new Telemetry(deps.sink, { device: deviceClass(), predictSampleRate: this.options.predictSampleRate });
    this.latency = new LatencyStats();
    this.guard = new MemoryGuard({ every: this.options.memoryCheckEvery, budget: this.options.memoryBudget });
    /** @type {import('./selection.js').Candidate | null} */
    this.current = null;
    this.model = null;
    /** candidate keys that failed, and "engine/variant" keys whose files failed */
    this.failed = new Set();
    this.fallbacks = [];
    this.rebuilds = 0;
    this.selection = null;
    this.loadInfo = null;
    this.gpu = null;
    /** measured compile + first-run cost per "engine/backend" (ms) */
    this.compileMs = {};
    /** best batch size per "engine/backend/variant" key, and the measured per-image figures */
    this.batching = {};
    this.disposed = false;
    /** serialises recoveries, rebuilds and the upgrade's timing with predictions */
    this.gate = new Gate();
  }

  /** Load manifest and model, start on the first candidate that works, warm it up. */
  async load() {
    const t0 = now();
    const o = this.options;
    this.telemetry.emit('init', { model: o.model, channel: o.channel, crossOriginIsolated: Boolean(globalThis.crossOriginIsolated) });
    this.progress.phase('manifest', { model: o.model });
    // The engine this model ran on last time (any version) starts loading while the manifest is in
    // flight: both are on the critical path of a repeat visit, neither depends on the other. A cold
    // visit only prefetches the likely engine's module code (start.js earlyEngine): a LiteRT-only model,
    // or one that starts on LiteRT.js, must not pay for tf.min.js, nor a TF.js-only model for
    // compiling LiteRT.js.
    const hint = o.remember && this.store ? this.store.get(this._hintKey()) : null;
    const early = earlyEngine({
      hint, engines: o.engines, litert: o.litert, backends: o.backends, variants: o.variants, features: this.features,
    });
    const te = now();
    const engineReady = early && early.mode === 'start' ? this.engines.get(early.engine).then(() => now() - te) : Promise.resolve(null);
    engineReady.catch(() => {});
    const prefetch = early && early.mode === 'prefetch' ? this.engines.prefetch(early.engine) : null;
    /** What was brought down beside the manifest: {engine, mode, used, ok?, bytes?, ms?} (filled in as it lands). */
    this.early = early ? { ...early } : null;
    if (prefetch) prefetch.then((r) => Object.assign(this.early, r, { ms: now() - te }));
    try {
      const { manifest, source, ms: manifestMs, reason: manifestReason } = await fetchManifest({
        server: this.server, model: o.model, channel: o.channel, clientId: o.clientId, fetch: this.fetch, cache: this.cache,
      });
      this.manifest = manifest;
      this.telemetry.set({ model: manifest.name, version: manifest.version });
      if (source !== 'network') this.telemetry.emit('fallback', { phase: 'manifest', from: 'network', to: source, reason: manifestReason });
      this.choiceKey = choiceKey(deviceKey(), manifest.name, manifest.version);
      const remembered = o.remember && this.store ? this.store.get(this.choiceKey) : null;
      this.remembered = remembered;
      if (remembered && remembered.compile) Object.assign(this.compileMs, remembered.compile);
      if (remembered && remembered.batch) this.batching = { ...remembered.batch };
      // GPU facts (an adapter request, a WebGL context) are not on the way to the first answer:
      // the start is on a CPU path whenever one is allowed (a GPU's first prediction compiles
      // shaders); they are read for the upgrade, after the first answer.
      this.candidates = this._listCandidates(null);
      if (!this.candidates.length) this.candidates = this._listCandidates(await this._gpuFacts());
      if (!this.candidates.length) {
        throw new LoadError(`no candidate: the manifest's variants (${manifest.variants.map((v) => v.name).join(', ')}) `
          + `and this browser's backends do not meet the options (backends ${o.backends || 'any'}, variants ${o.variants || 'any'})`, 'backend-init');
      }
      let engineMs = null;
      const files = await this._start(remembered, () => engineReady.then((ms) => { engineMs = ms; }, () => {}));
      if (o.remember && this.store && this.selection.source !== 'remembered') this._remember({ measured: false });
      this.loadInfo = {
        ms: now() - t0, manifestMs, manifestSource: source, engineMs, filesMs: files.ms,
        fromCache: files.fromCache, fromNetwork: files.fromNetwork, bytesFetched: files.bytesFetched,
        evicted: files.evicted, selectionMs: this.selection.ms, selection: this.selection.source,
        early: this.early && Object.assign(this.early, { used: this.early.engine === this.current.engine }),
        firstMs: this.selection.results.length ? this.selection.results[this.selection.results.length - 1].warmupMs : null,
      };
      this.telemetry.emit('load', { ...this.loadInfo, probes: this.selection.results });
      this.progress.phase('ready', { ...this.current });
      return this;
    } catch (err) {
      this.telemetry.emit('error', { phase: 'load', ...toPlain(err) });
      throw err;
    }
  }

  _hintKey() {
    return `browserml:engine:${deviceKey()}:${this.options.model}`;
  }

  /** Candidates for these GPU facts (null: CPU backends only). */
  _listCandidates(gpu) {
    const o = this.options;
    return listCandidates(this.manifest, {
      backends: engineBackends(gpu, this.features), gpu,
      allowBackends: o.backends, allowVariants: o.variants,
      engines: o.litert === 'off' ? (o.engines || ['tfjs', 'litert']).filter((e) => e !== 'litert') : o.engines,
    });
  }

  /** GPU facts, asked once; the candidate list grows by the GPU backends they allow. */
  async _gpuFacts() {
    if (!this._gpuPromise) {
      this._gpuPromise = Promise.resolve(this._gpu()).then((facts) => {
        this.gpu = facts;
        if (this.manifest) {
          const known = new Set((this.candidates || []).map(candidateKey));
          this.candidates = [...(this.candidates || []), ...this._listCandidates(facts).filter((c) => !known.has(candidateKey(c)))];
        }
        return facts;
      });
    }
    return this._gpuPromise;
  }

  /** Store the current choice (and the engine hint a repeat visit pre-loads). @param {object} extra */
  _remember(extra) {
    if (!this.options.remember || !this.store || !this.current) return;
    this.store.set(this.choiceKey, this._record(extra));
    this.store.set(this._hintKey(), { engine: this.current.engine, at: Date.now() });
  }

  /** The remembered record of the current choice. @param {object} extra */
  _record(extra) {
    return {
      ...this.current, ms: this._currentMs(), compile: { ...this.compileMs }, batch: { ...this.batching }, at: Date.now(), ...extra,
    };
  }

  /** The start policy's order, tried until one answers (starter.js). @returns {Promise<object>} the file report */
  _start(remembered, waitEarlyEngine) {
    return starter.start(this, remembered, waitEarlyEngine);
  }

  /** Record a failure's reach (recovery.js markFailed). */
  _markFailed(candidate, err) {
    recovery.markFailed(this.failed, candidate, err);
  }

  _isFailed(c) {
    return recovery.isFailed(this.failed, c);
  }

  /** "engine" and "engine/backend" runtimes that cost nothing more to start. */
  _loadedRuntimes() {
    const out = new Set();
    for (const name of this.engines.loaded()) out.add(name);
    return out;
  }

  /** Fetch + verify + assemble one variant's files (starter.js loadFiles). */
  _files(variantName, engine) {
    return starter.loadFiles(this, variantName, engine);
  }

  /** Build a candidate without making it current (lifecycle.js build). */
  _build(candidate, artifacts) {
    return lifecycle.build(this, candidate, artifacts);
  }

  /** Make `candidate` current: build it, then free what the previous candidate held. */
  async _activate(candidate, artifacts) {
    const built = await this._build(candidate, artifacts);
    this._adopt(candidate, built);
    return built;
  }

  /** Serve from `built` now (lifecycle.js adopt). */
  _adopt(candidate, built) {
    lifecycle.adopt(this, candidate, built);
  }

  /** Free every backend of an engine that serves nothing now (lifecycle.js releaseEngine). */
  _releaseEngine(engine) {
    lifecycle.releaseEngine(this, engine);
  }

  _setCurrent(candidate) {
    this.current = { engine: candidate.engine, backend: candidate.backend, variant: candidate.variant };
    this.telemetry.set({ engine: candidate.engine, backend: candidate.backend, variant: candidate.variant, threads: this.engine.threadsUsed() });
  }

  /** The current path's time a prediction: measured by the upgrade, remembered, or observed. */
  _currentMs() {
    if (this._measuredMs && this._measuredMs.key === candidateKey(this.current)) return this._measuredMs.ms;
    const observed = this.latency.summary().p50Ms;
    if (Number.isFinite(observed)) return observed;
    if (this.remembered && Number.isFinite(this.remembered.ms) && candidateKey(this.remembered) === candidateKey(this.current)) return this.remembered.ms;
    const first = this.selection && this.selection.results.find((r) => r.ok);
    return first ? first.ms : NaN;
  }

  /**
   * The upgrade, scheduled once after the first prediction (or by `upgraded()`): in idle time,
   * measure the other candidates the upgrade policy lists against the current one and keep the
   * fastest (upgrader.js). Never throws: every failure is a `fallback` event and the current path
   * keeps serving.
   * @returns {Promise<object>} the final `upgrade` record
   */
  upgraded() {
    if (!this._upgradePromise) this._upgradePromise = scheduleUpgrade(this);
    return this._upgradePromise;
  }

  /** Candidate keys that must not be measured (failed candidates, variants, backends). */
  _failedKeys() {
    return recovery.failedKeys(this.candidates, this.failed);
  }

  /** Record and remember the upgrade's outcome (upgrader.js upgradeEnd). */
  _upgradeEnd(state, results, t0, reason) {
    return upgradeEnd(this, state, results, t0, reason);
  }

  /** Record and report one fallback. */
  _fallback(candidate, err, phase) {
    const entry = recovery.fallbackEntry(candidate, err, phase);
    this.fallbacks.push(entry);
    this.telemetry.emit('fallback', { ...entry, fromBackend: candidate.backend, fromVariant: candidate.variant });
  }

  /**
   * Classify one image.
   * @param {any} input File | Blob | ImageBitmap | ImageData | HTMLImageElement
   * @param {{topK?: number}} [opts]
   * @returns {Promise<{labels: {label: string, p: number}[], ms: number, backend: string, variant: string, version: number, engine: string}>}
   */
  async classify(input, opts = {}) {
    const [out] = await this.classifyBatch([input], opts);
    if (out.error) throw out.error;
    return out;
  }

  /**
   * Classify several images, in chunks of the batch size the current path does best at
   * (batching.js). Inputs that cannot be decoded get `{error}` in their slot instead of failing
   * the others.
   * @param {any[]} inputs
   * @param {{topK?: number}} [opts]
   */
  async classifyBatch(inputs, opts = {}) {
    if (this.disposed) throw new EngineError('this classifier was disposed', 'disposed');
    const k = opts.topK ?? 3;
    const t0 = now();
    const decoded = await Promise.all(inputs.map((x) => decode(x, { maxPixels: this.options.maxPixels }).catch((err) => err)));
    const good = decoded.filter((d) => !(d instanceof Error));
    for (const d of decoded) {
      if (d instanceof Error) {
        this.latency.recordError();
        this.telemetry.emit('error', { phase: 'decode', ...toPlain(d) });
      }
    }
    let rows = [];
    if (good.length) {
      try {
        for (const chunk of batchChunks(good, this.batchSize())) rows.push(...await this._predict(chunk));
      } catch (err) {
        this.latency.recordError();
        this.telemetry.emit('error', { phase: 'predict', ...toPlain(err) });
        throw err;
      }
    }
    const ms = now() - t0;
    const info = this._resultInfo();
    let r = 0;
    const out = decoded.map((d) => (d instanceof Error
      ? { error: d, ...info }
      : { labels: topK(rows[r++], this.manifest.labels, k), ms: ms / good.length, ...info }));
    for (let i = 0; i < good.length; i += 1) this.latency.record(ms / good.length);
    if (good.length) {
      this.telemetry.emit('predict', { ms, batch: good.length });
      await this._memoryCheck();
      // The first answer came from the start candidate; now (idle time) measure the others.
      if (!this._upgradePromise) this.upgraded();
    }
    return out;
  }

  /** Batch size for the current path: measured (measureBatches), else the backend's default. */
  batchSize() {
    const b = this.batching[candidateKey(this.current)];
    return b && b.best ? b.best : defaultBatch(this.current);
  }

  /**
   * Time the current path at batch sizes 1, 8 and 32 (ms per image, zeros input) and use the best
   * from then on (remembered with the choice). Predictions wait while it runs.
   * @param {number[]} [sizes]
   * @returns {Promise<{sizes: Record<string, number>, best: number}>}
   */
  async measureBatches(sizes = [1, 8, 32]) {
    return this._exclusive(async () => {
      const spec = this.manifest.input;
      const zeros = (n) => Array.from({ length: n }, () => new ImageData(spec.width, spec.height));
      const perImage = {};
      for (const n of sizes) {
        const images = zeros(n);
        await this.engine.predict(this.model, images, spec);
        const times = await timeRuns(() => this.engine.predict(this.model, images, spec), { deadline: now() + 1000, minRuns: 2, maxRuns: 5 });
        perImage[n] = median(times) / n;
      }
      const best = bestBatch(perImage);
      const entry = { sizes: perImage, best };
      this.batching[candidateKey(this.current)] = entry;
      if (this.options.remember && this.store) {
        const stored = this.store.get(this.choiceKey);
        if (stored && candidateKey(stored) === candidateKey(this.current)) this.store.set(this.choiceKey, { ...stored, batch: { ...this.batching } });
      }
      return entry;
    });
  }

  _resultInfo() {
    return {
      backend: this.current.backend, variant: this.current.variant, version: this.manifest.version,
      engine: this.current.engine, threads: this.engine.threadsUsed(),
    };
  }

  /** Predict with recovery (recovery.js predict). */
  _predict(images) {
    return recovery.predict(this, images);
  }

  /** Run `fn` while predictions wait (after the ones in flight have finished). */
  _exclusive(fn) {
    return this.gate.exclusive(fn);
  }

  /** Every N predictions compare memory with the budget; rebuild when it is exceeded. */
  async _memoryCheck() {
    const check = this.guard.tick(() => this.engine.memory());
    if (!check) return;
    this.telemetry.emit('memory', { memory: check.info, exceeded: check.exceeded, action: check.exceeded.length ? 'rebuild' : 'ok' });
    if (check.exceeded.length) await this._exclusive(() => this.rebuild(check.exceeded.join(', ')));
  }

  /**
   * Free everything the backend holds and reload the model from the cache on a fresh backend.
   * @param {string} [reason]
   */
  rebuild(reason = 'requested') {
    return lifecycle.rebuild(this, reason);
  }

  /** Plain-object statistics (structured-cloneable, so the worker can send them). */
  stats() {
    return {
      ...this.latency.summary(),
      model: this.manifest ? this.manifest.name : this.options.model,
      version: this.manifest ? this.manifest.version : null,
      engine: this.current ? this.current.engine : null,
      engineVersion: this.engine ? this.engine.version : null,
      backend: this.current ? this.current.backend : null,
      variant: this.current ? this.current.variant : null,
      threads: this.current ? this.engine.threadsUsed() : null,
      device: this.telemetry.context.device,
      wasm: this.features,
      gpu: this.gpu,
      memory: this.current ? this.engine.memory() : null,
      upgrade: this.upgrade,
      batch: this.current ? { size: this.batchSize(), ...(this.batching[candidateKey(this.current)] || {}) } : null,
      memoryChecks: this.guard.checks,
      rebuilds: this.rebuilds,
      fallbacks: this.fallbacks.slice(),
      selection: this.selection,
      load: this.loadInfo,
      telemetrySinkErrors: this.telemetry.sinkErrors,
    };
  }

  /** Free the model. The classifier cannot be used afterwards. */
  dispose() {
    lifecycle.dispose(this);
  }
}

function now() {
  return performance.now();
}
