/**
 * The classifier runtime: loads a model once, picks an (engine, backend, variant) by measuring,
 * predicts, recovers from failures and guards memory. It runs on the page's main thread or inside
 * the SDK's worker (worker.js) unchanged: everything it needs from the page (remembered choices,
 * the telemetry sink) is injected.
 * @module runtime
 */

import { BlobCache } from './cache.js';
import { deviceClass, deviceKey, wasmFeatures } from './device.js';
import { EngineError, InputError, LoadError, toPlain } from './errors.js';
import { buildArtifacts, fetchManifest, loadVariantFiles } from './loader.js';
import { MemoryGuard } from './memory.js';
import { LoadProgress } from './progress.js';
import { decode } from './preprocess.js';
import {
  DEFAULT_BUDGET_MS, candidateKey, choiceKey, fallbackCandidates, litertOrder, litertPlan, probeOrder, rank,
  shareDeadline, shouldSwitch, timeRuns, variantOrder,
} from './selection.js';
import { LatencyStats, median, topK } from './stats.js';
import { Telemetry } from './telemetry.js';
import { TfjsEngine } from './engines/tfjs.js';

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
 * @property {number} [selectionBudgetMs] time budget for timing backends (default 1500)
 * @property {boolean} [remember] reuse / store the measured choice (default true)
 * @property {number | object} [memoryBudget] bytes, or {numBytes, numBytesInGPU, numTensors}
 * @property {number} [memoryCheckEvery] predictions between memory checks (default 100)
 * @property {number} [maxPixels] decode cap for huge images (default 4 MP)
 * @property {boolean} [cache] use the Cache API (default true)
 * @property {number} [threads] wasm threads to ask for (TF.js: see engines/tfjs.js coreCountHint;
 *   LiteRT.js: default min(cores, 4) when crossOriginIsolated)
 * @property {'auto' | 'force' | 'off'} [litert] LiteRT.js upgrade after the first prediction
 *   (default "auto": only where it is usable, worth it and measured faster; see selection.litertPlan)
 * @property {number} [litertMinMs] size rule: TF.js must need at least this many ms a prediction
 *   before LiteRT.js is fetched (default 10)
 * @property {number} [predictSampleRate] fraction of predict events sent to telemetry (default 1)
 */

/**
 * Null when every output is a usable probability vector, else the reason.
 * @param {Float32Array[]} rows
 * @returns {string | null}
 */
export function checkOutputs(rows) {
  for (const row of rows) {
    let allZero = true;
    for (let i = 0; i < row.length; i += 1) {
      const v = row[i];
      if (!Number.isFinite(v)) return 'NaN or infinite outputs';
      if (v !== 0) allZero = false;
    }
    if (allZero) return 'all-zero outputs (lost GPU context?)';
  }
  return null;
}

export class Runtime {
  /**
   * @param {LoadOptions} options
   * @param {{store?: {get(k: string): any, set(k: string, v: any): void}, sink?: any,
   *   engineFactory?: () => any, cache?: BlobCache | null, fetch?: typeof fetch,
   *   progress?: (event: import('./progress.js').ProgressEvent) => void}} [deps]
   *   progress: called with load progress (see progress.js), at load and on later loads
   */
  constructor(options, deps = {}) {
    if (!options || !options.model) throw new TypeError('BrowserML.load needs {model}');
    const origin = globalThis.location ? globalThis.location.origin : undefined;
    this.options = { channel: 'stable', selectionBudgetMs: DEFAULT_BUDGET_MS, remember: true, cache: true, ...options };
    this.server = new URL(this.options.server || origin || '', origin).href;
    this.store = deps.store || null;
    this.cache = this.options.cache === false ? null : (deps.cache !== undefined ? deps.cache : new BlobCache());
    this.fetch = deps.fetch;
    const vendor = this.options.vendor || new URL('vendor/', this.server.endsWith('/') ? this.server : `${this.server}/`).href;
    /** The TF.js engine: always what a cold visit starts on. */
    const runtimes = this.options.runtimes || {};
    this.tfjs = deps.engineFactory ? deps.engineFactory() : new TfjsEngine({
      vendor, threads: this.options.threads, tf: runtimes.tf, tfWasm: runtimes.tfWasm, wasmPaths: this.options.wasmPaths,
    });
    /** The LiteRT.js engine, created (and its 9.4 MB wasm fetched) only when tried. */
    this.litert = null;
    // engines/litert.js itself is imported on first use too: a page that never tries LiteRT.js
    // fetches nothing of it.
    this._litertFactory = deps.litertFactory || (async () => {
      const { LitertEngine } = await import('./engines/litert.js');
      return new LitertEngine({ vendor, threads: this.options.threads, features: this.features, lib: runtimes.litert });
    });
    /** The engine of the current candidate. */
    this.engine = this.tfjs;
    /** What happened to the LiteRT.js upgrade: state none | skipped | pending | loading | switched | kept | failed | remembered. */
    this.upgrade = { state: 'none', reason: 'no prediction yet' };
    this._upgradePromise = null;
    /** The TF.js candidate to go back to when LiteRT.js fails after a switch. */
    this.tfjsChoice = null;
    /** Bytes, integrity, compile and warm-up progress of every model load (progress.js). */
    this.progress = new LoadProgress(deps.progress);
    this.telemetry = new Telemetry(deps.sink, { device: deviceClass(), predictSampleRate: this.options.predictSampleRate });
    /** What wasm engines can use on this device (threads, relaxed SIMD, int8 dot product). */
    this.features = wasmFeatures();
    this.latency = new LatencyStats();
    this.guard = new MemoryGuard({ every: this.options.memoryCheckEvery, budget: this.options.memoryBudget });
    /** @type {import('./selection.js').Candidate | null} */
    this.current = null;
    this.model = null;
    this.failed = new Set();
    this.fallbacks = [];
    this.rebuilds = 0;
    this.selection = null;
    this.loadInfo = null;
    this.disposed = false;
    /** serialises recoveries and rebuilds with predictions */
    this._busy = null;
    /** predictions in flight (an exclusive section waits for them) */
    this._running = new Set();
  }

  /** Load manifest and model, pick what to run on, warm it up. */
  async load() {
    const t0 = now();
    const o = this.options;
    this.telemetry.emit('init', { model: o.model, channel: o.channel, crossOriginIsolated: Boolean(globalThis.crossOriginIsolated) });
    this.progress.phase('manifest', { model: o.model });
    // TF.js's bundle is parsed while the manifest is in flight: both are on the critical path of
    // a repeat visit, neither depends on the other.
    const te = now();
    const engineReady = this.tfjs.init().then(() => now() - te);
    engineReady.catch(() => {});
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
      this.litertVariants = o.litert === 'off' ? [] : litertOrder(manifest.variants, o.variants);

      let files = { fromCache: 0, fromNetwork: 0, bytesFetched: 0, ms: 0, evicted: [] };
      let engineMs = null;
      if (remembered && remembered.engine === 'litert' && this.litertVariants.includes(remembered.variant)) {
        const report = await this._startRemembered(remembered);
        if (report) files = sumFiles(files, report);
      }
      if (!this.current) {
        engineMs = await engineReady;
        files = sumFiles(files, await this._startTfjs(remembered));
      }
      if (o.remember && this.store && this.selection.source !== 'remembered') {
        this.store.set(this.choiceKey, { ...this.current, ms: this.selection.best, at: Date.now() });
      }
      this.loadInfo = {
        ms: now() - t0, manifestMs, manifestSource: source, engineMs, filesMs: files.ms,
        fromCache: files.fromCache, fromNetwork: files.fromNetwork, bytesFetched: files.bytesFetched,
        evicted: files.evicted, selectionMs: this.selection.ms, selection: this.selection.source,
      };
      this.telemetry.emit('load', { ...this.loadInfo, probes: this.selection.results });
      this.progress.phase('ready', { ...this.current });
      return this;
    } catch (err) {
      this.telemetry.emit('error', { phase: 'load', ...toPlain(err) });
      throw err;
    }
  }

  /**
   * TF.js start: time the backends on the first variant that loads (or go straight to the
   * remembered backend). Returns the file report.
   * @param {object | null} remembered
   */
  async _startTfjs(remembered) {
    const o = this.options;
    this.engine = this.tfjs;
    this.available = probeOrder(await this.tfjs.availableBackends(), o.backends);
    if (!this.available.length) throw new LoadError(`none of the backends ${o.backends} is available here`, 'backend-init');
    const usable = remembered && remembered.engine === 'tfjs' && this.available.includes(remembered.backend) ? remembered : null;
    this.variants = variantOrder(this.manifest.variants, 'tfjs', usable && usable.variant, o.variants);
    if (!this.variants.length) throw new LoadError(`manifest offers no tfjs variant${o.variants ? ` among ${o.variants}` : ''}`, 'manifest');

    let files = { fromCache: 0, fromNetwork: 0, bytesFetched: 0, ms: 0, evicted: [] };
    for (const variant of this.variants) {
      let artifacts;
      try {
        const got = await this._files(variant, 'tfjs');
        artifacts = got.artifacts;
        files = sumFiles(files, got.report);
      } catch (err) {
        this._fallback({ engine: 'tfjs', backend: null, variant }, err, 'load');
        continue;
      }
      if (usable && usable.variant === variant) {
        try {
          await this._activate({ engine: 'tfjs', backend: usable.backend, variant }, artifacts);
          this.selection = { source: 'remembered', results: [], ms: 0 };
          break;
        } catch (err) {
          this._fallback({ ...usable, variant }, err, 'load');
        }
      }
      if (await this._probe(variant, artifacts)) break;
    }
    if (!this.current || this.current.engine !== 'tfjs') {
      throw new LoadError(`no variant could be loaded: ${this.fallbacks.map((f) => `${f.from}: ${f.reason}`).join('; ')}`, 'no-variant');
    }
    return files;
  }

  /**
   * Repeat visit where LiteRT.js won before: start on it directly. Null when it fails (reported;
   * the caller starts TF.js).
   * @param {import('./selection.js').Candidate} remembered
   */
  async _startRemembered(remembered) {
    const candidate = { engine: 'litert', backend: remembered.backend, variant: remembered.variant };
    try {
      const got = await this._files(candidate.variant, 'litert');
      await this._activate(candidate, got.artifacts);
      this.selection = { source: 'remembered', results: [], ms: 0 };
      this.upgrade = { state: 'remembered', reason: 'LiteRT.js won on this device and model version before' };
      return got.report;
    } catch (err) {
      this._fallback(candidate, err, 'load');
      this.engine = this.tfjs;
      this.current = null;
      return null;
    }
  }

  /** @param {string} name @returns {Promise<any>} the engine object, LiteRT.js created on first use */
  async _engineFor(name) {
    if (name !== 'litert') return this.tfjs;
    if (!this._litertCreating) {
      this._litertCreating = Promise.resolve(this._litertFactory()).then((engine) => { this.litert = engine; return engine; });
      this._litertCreating.catch(() => { this._litertCreating = null; });
    }
    try {
      return await this._litertCreating;
    } catch (err) {
      throw new LoadError(`cannot load the SDK's LiteRT.js engine: ${err && err.message ? err.message : err}`, 'runtime');
    }
  }

  /** Fetch + verify + assemble one variant's files. @param {string} variantName @param {string} [engine] */
  async _files(variantName, engine = this.engine.name) {
    const variant = this.manifest.variants.find((v) => v.name === variantName && (v.engine || 'tfjs') === engine);
    if (!variant) throw new LoadError(`manifest has no ${engine} variant ${variantName}`, 'manifest');
    let report;
    try {
      report = await loadVariantFiles(variant, { server: this.server, fetch: this.fetch, cache: this.cache, progress: this.progress });
    } catch (err) {
      this.progress.abandon(variantName);
      throw err;
    }
    const artifacts = buildArtifacts(variant, report.files);
    report.files = null; // the artifacts hold the bytes now; let the map go
    return { artifacts, report };
  }

  /**
   * Time every available backend on this variant within the budget; keep the fastest.
   * @returns {Promise<boolean>} whether some backend could run it
   */
  async _probe(variant, artifacts) {
    const spec = this.manifest.input;
    const start = now();
    const budget = this.options.selectionBudgetMs;
    const results = [];
    let best = null;
    const backends = this.available.filter((b) => !this.failed.has(candidateKey({ engine: this.engine.name, backend: b, variant })));
    for (let i = 0; i < backends.length; i += 1) {
      const candidate = { engine: this.engine.name, backend: backends[i], variant };
      if (best && now() - start >= budget) {
        results.push({ candidate, ok: false, error: 'skipped: selection budget spent' });
        continue;
      }
      let model = null;
      try {
        await this.engine.useBackend(candidate.backend);
        const tl = now();
        this.progress.phase('compile', candidate);
        model = await this.engine.loadModel(artifacts);
        const tw = now();
        this.progress.phase('warmup', candidate);
        const bad = checkOutputs(await this.engine.warmup(model, spec));
        if (bad) throw new EngineError(`warm-up gave ${bad}`, 'nan');
        const warmupMs = now() - tw;
        const deadline = shareDeadline(start, budget, backends.length - i, now());
        const times = await timeRuns(() => this.engine.warmup(model, spec), { deadline, minRuns: 1, maxRuns: 5 });
        const ms = median(times);
        results.push({ candidate, ok: true, ms, runs: times.length, warmupMs, loadMs: tw - tl });
        if (!best || ms < best.ms) {
          if (best) this.engine.disposeModel(best.model);
          best = { candidate, model, ms };
        } else {
          this.engine.disposeModel(model);
        }
      } catch (err) {
        this.engine.disposeModel(model);
        this.failed.add(candidateKey(candidate));
        results.push({ candidate, ok: false, error: String(err && err.message ? err.message : err) });
        this._fallback(candidate, err, 'probe');
      }
    }
    const ms = now() - start;
    if (!best) return false;
    await this.engine.useBackend(best.candidate.backend);
    this.model = best.model;
    this._setCurrent(best.candidate);
    this.ranking = rank(results).map((r) => r.candidate.backend);
    this.selection = { source: 'measured', results, ms, best: best.ms };
    return true;
  }

  /**
   * Make `candidate` current: backend, model from artifacts (or the cache), warm-up, check.
   * @param {import('./selection.js').Candidate} candidate
   * @param {object} [artifacts]
   */
  async _activate(candidate, artifacts) {
    const engine = await this._engineFor(candidate.engine);
    const arts = artifacts || (await this._files(candidate.variant, candidate.engine)).artifacts;
    await engine.useBackend(candidate.backend);
    this.progress.phase('compile', candidate);
    const model = await engine.loadModel(arts);
    try {
      this.progress.phase('warmup', candidate);
      const bad = checkOutputs(await engine.warmup(model, this.manifest.input));
      if (bad) throw new EngineError(`warm-up gave ${bad}`, 'nan');
      const health = engine.health();
      if (health) throw new EngineError(health, 'backend-lost');
    } catch (err) {
      engine.disposeModel(model);
      throw err;
    }
    if (this.model) this.engine.disposeModel(this.model);
    this.engine = engine;
    this.model = model;
    this._setCurrent(candidate);
  }

  _setCurrent(candidate) {
    this.current = { ...candidate };
    this.telemetry.set({ engine: candidate.engine, backend: candidate.backend, variant: candidate.variant, threads: this.engine.threadsUsed() });
  }

  /**
   * The LiteRT.js upgrade, scheduled once after the first prediction (or by `upgraded()`): decide
   * by litertPlan, then in idle time fetch LiteRT.js, and time it against the current TF.js model.
   * Never throws: every failure is a `fallback` event and TF.js keeps serving.
   * @returns {Promise<object>} the final `upgrade` record
   */
  upgraded() {
    if (this._upgradePromise) return this._upgradePromise;
    const o = this.options;
    const plan = this.current.engine === 'litert'
      ? { go: false, reason: this.upgrade.reason }
      : litertPlan({
        mode: o.litert, features: this.features, variants: this.litertVariants, tfjsMs: this._tfjsMs(),
        minMs: o.litertMinMs, remembered: this.remembered,
      });
    if (this.current.engine !== 'litert') this.upgrade = { state: plan.go ? 'pending' : 'skipped', reason: plan.reason };
    this._upgradePromise = plan.go
      ? whenIdle().then(() => this._upgradeToLitert()).catch((err) => {
        this.upgrade = { ...this.upgrade, state: 'failed', error: String(err && err.message ? err.message : err) };
      }).then(() => this.upgrade)
      : Promise.resolve(this.upgrade);
    return this._upgradePromise;
  }

  /** TF.js's time a prediction on this device: measured at load, remembered, or observed. */
  _tfjsMs() {
    if (this.selection && Number.isFinite(this.selection.best)) return this.selection.best;
    if (this.remembered && Number.isFinite(this.remembered.ms)) return this.remembered.ms;
    return this.latency.summary().p50Ms;
  }

  async _upgradeToLitert() {
    const t0 = now();
    const force = this.options.litert === 'force';
    const results = [];
    this.upgrade = { ...this.upgrade, state: 'loading' };
    let engine;
    try {
      engine = await this._engineFor('litert');
      await engine.init();
    } catch (err) {
      this._fallback({ engine: 'litert', backend: 'wasm', variant: null }, err, 'upgrade');
      return this._upgradeEnd('failed', results, t0);
    }
    const initMs = now() - t0;
    for (const variant of this.litertVariants) {
      if (this.disposed) break;
      const candidate = { engine: 'litert', backend: 'wasm', variant };
      let outcome;
      try {
        const { artifacts } = await this._files(variant, 'litert');
        outcome = await this._exclusive(() => this._raceCurrent(engine, candidate, artifacts, force));
      } catch (err) {
        results.push({ candidate, ok: false, error: String(err && err.message ? err.message : err) });
        this._fallback(candidate, err, 'upgrade');
        continue;
      }
      results.push(outcome.result);
      // The first variant that runs decides: variants come fastest-expected first (int8), so one
      // that loses to TF.js is not followed by a (bigger, slower) float download.
      return this._upgradeEnd(outcome.switched ? 'switched' : 'kept', results, t0, initMs);
    }
    return this._upgradeEnd('failed', results, t0, initMs);
  }

  /** Record and remember the upgrade's outcome. */
  _upgradeEnd(state, results, t0, initMs = null) {
    const reasons = { switched: 'LiteRT.js measured faster', kept: 'TF.js measured faster', failed: 'LiteRT.js failed (see fallbacks)' };
    this.upgrade = { state, reason: reasons[state], initMs, ms: now() - t0, results, threads: this.litert ? this.litert.threadsUsed() : null };
    if (this.options.remember && this.store && !this.disposed) {
      const best = results.find((r) => r.ok);
      if (state === 'switched') this.store.set(this.choiceKey, { ...this.current, ms: best.ms, at: Date.now() });
      else if (this.current.engine === 'tfjs') {
        this.store.set(this.choiceKey, { ...this.current, ms: best ? best.against.ms : this._tfjsMs(), litert: state === 'kept' ? 'slower' : 'failed', at: Date.now() });
      }
    }
    return this.upgrade;
  }

  /**
   * Time a LiteRT.js candidate and the current model back to back (predictions wait), inside the
   * selection budget; switch when the candidate is faster (or forced).
   */
  async _raceCurrent(engine, candidate, artifacts, force) {
    const spec = this.manifest.input;
    const start = now();
    const budget = this.options.selectionBudgetMs;
    const tl = now();
    this.progress.phase('compile', candidate);
    const model = await engine.loadModel(artifacts);
    let kept = false;
    try {
      const tw = now();
      this.progress.phase('warmup', candidate);
      const bad = checkOutputs(await engine.warmup(model, spec));
      if (bad) throw new EngineError(`warm-up gave ${bad}`, 'nan');
      const warmupMs = now() - tw;
      const times = await timeRuns(() => engine.warmup(model, spec), { deadline: shareDeadline(start, budget, 2, now()), minRuns: 1, maxRuns: 5 });
      const current = { ...this.current };
      const base = await timeRuns(() => this.engine.warmup(this.model, spec), { deadline: shareDeadline(start, budget, 1, now()), minRuns: 1, maxRuns: 5 });
      const ms = median(times);
      const result = {
        candidate, ok: true, ms, runs: times.length, warmupMs, loadMs: tw - tl,
        against: { candidate: current, ms: median(base), runs: base.length },
      };
      if (this.disposed || !shouldSwitch(ms, result.against.ms, force)) return { switched: false, result };
      this.tfjsChoice = current;
      this.engine.disposeModel(this.model);
      this.engine = engine;
      this.model = model;
      kept = true;
      this._setCurrent(candidate);
      return { switched: true, result };
    } finally {
      if (!kept) engine.disposeModel(model);
    }
  }

  /** Record and report one fallback. */
  _fallback(candidate, err, phase) {
    const entry = {
      from: [candidate.engine, candidate.backend, candidate.variant].filter(Boolean).join('/'),
      phase,
      code: (err && err.code) || 'error',
      reason: String(err && err.message ? err.message : err),
    };
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
   * Classify several images in one batch. Inputs that cannot be decoded get `{error}` in their
   * slot instead of failing the others.
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
        rows = await this._predict(good);
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
      // The first answer came from the engine we started on; now (idle time) consider LiteRT.js.
      if (!this._upgradePromise) this.upgraded();
    }
    return out;
  }

  _resultInfo() {
    return {
      backend: this.current.backend, variant: this.current.variant, version: this.manifest.version,
      engine: this.current.engine, threads: this.engine.threadsUsed(),
    };
  }

  /** Predict with recovery: a failed backend or NaN output moves to the next candidate and retries. */
  async _predict(images) {
    for (let attempt = 0; ; attempt += 1) {
      if (this._busy) await this._busy;
      try {
        const rows = await this._track(this.engine.predict(this.model, images, this.manifest.input));
        const health = this.engine.health();
        if (health) throw new EngineError(health, 'backend-lost');
        const bad = checkOutputs(rows);
        if (bad) throw new EngineError(`prediction gave ${bad}`, 'nan');
        return rows;
      } catch (err) {
        if (err instanceof InputError || attempt >= 3) throw err;
        await this._exclusive(() => this._recover(err));
      }
    }
  }

  /** Count a prediction in flight until it settles. @param {Promise<any>} run */
  async _track(run) {
    this._running.add(run);
    try {
      return await run;
    } finally {
      this._running.delete(run);
    }
  }

  /** Run `fn` while predictions wait (after the ones in flight have finished). */
  async _exclusive(fn) {
    while (this._busy) await this._busy;
    const p = (async () => {
      if (this._running.size) await Promise.allSettled([...this._running]);
      return fn();
    })();
    this._busy = p.catch(() => {}).finally(() => { this._busy = null; });
    return p;
  }

  /** Move off a failing candidate to the next workable one, reporting each step. */
  async _recover(err) {
    const from = this.current;
    this.failed.add(candidateKey(from));
    this._fallback(from, err, 'predict');
    if (from.engine === 'litert') {
      await this._backToTfjs();
      return;
    }
    const kind = err && err.code === 'nan' ? 'variant' : 'backend';
    const backends = [...(this.ranking || []), ...this.available.filter((b) => !(this.ranking || []).includes(b))];
    for (const c of fallbackCandidates(from, kind, { variants: this.variants, backends }, this.failed)) {
      try {
        await this._activate(c);
        if (this.options.remember && this.store) this.store.set(this.choiceKey, { ...c, at: Date.now() });
        return;
      } catch (e) {
        this.failed.add(candidateKey(c));
        this._fallback(c, e, 'recover');
      }
    }
    throw new EngineError(`no backend or variant left after: ${err && err.message ? err.message : err}`, 'exhausted');
  }

  /** LiteRT.js failed after the switch: back to the TF.js choice (or a fresh TF.js start). */
  async _backToTfjs() {
    this.engine.disposeModel(this.model);
    this.model = null;
    this.engine = this.tfjs;
    let done = false;
    if (this.tfjsChoice) {
      try {
        await this._activate(this.tfjsChoice);
        done = true;
      } catch (e) {
        this.failed.add(candidateKey(this.tfjsChoice));
        this._fallback(this.tfjsChoice, e, 'recover');
      }
    }
    if (!done) {
      await this.tfjs.init();
      this.current = null;
      await this._startTfjs(null);
    }
    this.upgrade = { ...this.upgrade, state: 'failed', reason: 'LiteRT.js failed after the switch (see fallbacks)' };
    if (this.options.remember && this.store) this.store.set(this.choiceKey, { ...this.current, litert: 'failed', at: Date.now() });
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
  async rebuild(reason = 'requested') {
    const t0 = now();
    const before = this.engine.memory();
    this.engine.disposeModel(this.model);
    this.model = null;
    await this.engine.reset();
    await this._activate(this.current);
    this.rebuilds += 1;
    this.guard.rebuilds += 1;
    this.telemetry.emit('memory', { action: 'rebuilt', reason, before, after: this.engine.memory(), ms: now() - t0 });
  }

  /** Plain-object statistics (structured-cloneable, so the worker can send them). */
  stats() {
    return {
      ...this.latency.summary(),
      model: this.manifest ? this.manifest.name : this.options.model,
      version: this.manifest ? this.manifest.version : null,
      engine: this.current ? this.current.engine : null,
      engineVersion: this.engine.version,
      backend: this.current ? this.current.backend : null,
      variant: this.current ? this.current.variant : null,
      threads: this.current ? this.engine.threadsUsed() : null,
      device: this.telemetry.context.device,
      wasm: this.features,
      memory: this.current ? this.engine.memory() : null,
      upgrade: this.upgrade,
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
    if (this.disposed) return;
    this.disposed = true;
    this.engine.disposeModel(this.model);
    this.model = null;
  }
}

function sumFiles(a, b) {
  return {
    fromCache: a.fromCache + b.fromCache, fromNetwork: a.fromNetwork + b.fromNetwork,
    bytesFetched: a.bytesFetched + b.bytesFetched, ms: a.ms + b.ms, evicted: [...a.evicted, ...b.evicted],
  };
}

function now() {
  return performance.now();
}

/** Resolve when the thread is idle (requestIdleCallback; a timer in workers and old browsers). */
function whenIdle() {
  return new Promise((resolve) => {
    if (typeof globalThis.requestIdleCallback === 'function') globalThis.requestIdleCallback(() => resolve(), { timeout: 2000 });
    else setTimeout(resolve, 50);
  });
}
