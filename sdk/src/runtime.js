/**
 * The classifier runtime: loads a model once, picks an (engine, backend, variant) by measuring,
 * predicts, recovers from failures and guards memory. It runs on the page's main thread or inside
 * the SDK's worker (worker.js) unchanged: everything it needs from the page (remembered choices,
 * the telemetry sink) is injected.
 * @module runtime
 */

import { BlobCache } from './cache.js';
import { deviceClass, deviceKey } from './device.js';
import { EngineError, InputError, LoadError, toPlain } from './errors.js';
import { buildArtifacts, fetchManifest, loadVariantFiles } from './loader.js';
import { MemoryGuard } from './memory.js';
import { decode } from './preprocess.js';
import {
  DEFAULT_BUDGET_MS, candidateKey, choiceKey, fallbackCandidates, probeOrder, rank, shareDeadline,
  timeRuns, variantOrder,
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
 * @property {string[]} [backends] only consider these backends
 * @property {string[]} [variants] only consider these variants
 * @property {number} [selectionBudgetMs] time budget for timing backends (default 1500)
 * @property {boolean} [remember] reuse / store the measured choice (default true)
 * @property {number | object} [memoryBudget] bytes, or {numBytes, numBytesInGPU, numTensors}
 * @property {number} [memoryCheckEvery] predictions between memory checks (default 100)
 * @property {number} [maxPixels] decode cap for huge images (default 4 MP)
 * @property {boolean} [cache] use the Cache API (default true)
 * @property {number} [threads] wasm threads to ask for
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
   *   engineFactory?: () => any, cache?: BlobCache | null, fetch?: typeof fetch}} [deps]
   */
  constructor(options, deps = {}) {
    if (!options || !options.model) throw new TypeError('BrowserML.load needs {model}');
    const origin = globalThis.location ? globalThis.location.origin : undefined;
    this.options = { channel: 'stable', selectionBudgetMs: DEFAULT_BUDGET_MS, remember: true, cache: true, ...options };
    this.server = new URL(this.options.server || origin || '', origin).href;
    this.store = deps.store || null;
    this.cache = this.options.cache === false ? null : (deps.cache !== undefined ? deps.cache : new BlobCache());
    this.fetch = deps.fetch;
    this.engine = deps.engineFactory
      ? deps.engineFactory()
      : new TfjsEngine({ vendor: this.options.vendor || new URL('/vendor/', this.server).href, threads: this.options.threads });
    this.telemetry = new Telemetry(deps.sink, { device: deviceClass(), predictSampleRate: this.options.predictSampleRate });
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
  }

  /** Load manifest and model, pick what to run on, warm it up. */
  async load() {
    const t0 = now();
    const o = this.options;
    this.telemetry.emit('init', { model: o.model, channel: o.channel, crossOriginIsolated: Boolean(globalThis.crossOriginIsolated) });
    // TF.js's bundle is parsed while the manifest is in flight: both are on the critical path of
    // a repeat visit, neither depends on the other.
    const te = now();
    const engineReady = this.engine.init().then(() => now() - te);
    engineReady.catch(() => {});
    try {
      const { manifest, source, ms: manifestMs } = await fetchManifest({
        server: this.server, model: o.model, channel: o.channel, clientId: o.clientId, fetch: this.fetch, cache: this.cache,
      });
      this.manifest = manifest;
      this.telemetry.set({ model: manifest.name, version: manifest.version });
      this.choiceKey = choiceKey(deviceKey(), manifest.name, manifest.version);
      const remembered = o.remember && this.store ? this.store.get(this.choiceKey) : null;

      const engineMs = await engineReady;
      this.available = probeOrder(await this.engine.availableBackends(), o.backends);
      if (!this.available.length) throw new LoadError(`none of the backends ${o.backends} is available here`, 'backend-init');
      const usable = remembered && remembered.engine === this.engine.name && this.available.includes(remembered.backend) ? remembered : null;
      this.variants = variantOrder(manifest.variants, this.engine.name, usable && usable.variant, o.variants);
      if (!this.variants.length) throw new LoadError(`manifest offers no ${this.engine.name} variant${o.variants ? ` among ${o.variants}` : ''}`, 'manifest');

      let files = { fromCache: 0, fromNetwork: 0, bytesFetched: 0, ms: 0, evicted: [] };
      for (const variant of this.variants) {
        let artifacts;
        try {
          const got = await this._files(variant);
          artifacts = got.artifacts;
          files = sumFiles(files, got.report);
        } catch (err) {
          this._fallback({ engine: this.engine.name, backend: null, variant }, err, 'load');
          continue;
        }
        if (usable && usable.variant === variant) {
          try {
            await this._activate({ engine: this.engine.name, backend: usable.backend, variant }, artifacts);
            this.selection = { source: 'remembered', results: [], ms: 0 };
            break;
          } catch (err) {
            this._fallback({ ...usable, variant }, err, 'load');
          }
        }
        if (await this._probe(variant, artifacts)) break;
      }
      if (!this.current) {
        throw new LoadError(`no variant could be loaded: ${this.fallbacks.map((f) => `${f.from}: ${f.reason}`).join('; ')}`, 'no-variant');
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
      return this;
    } catch (err) {
      this.telemetry.emit('error', { phase: 'load', ...toPlain(err) });
      throw err;
    }
  }

  /** Fetch + verify + assemble one variant's files. */
  async _files(variantName) {
    const variant = this.manifest.variants.find((v) => v.name === variantName && (v.engine || 'tfjs') === this.engine.name);
    const report = await loadVariantFiles(variant, { server: this.server, fetch: this.fetch, cache: this.cache });
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
        model = await this.engine.loadModel(artifacts);
        const tw = now();
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
    const arts = artifacts || (await this._files(candidate.variant)).artifacts;
    await this.engine.useBackend(candidate.backend);
    const model = await this.engine.loadModel(arts);
    try {
      const bad = checkOutputs(await this.engine.warmup(model, this.manifest.input));
      if (bad) throw new EngineError(`warm-up gave ${bad}`, 'nan');
      const health = this.engine.health();
      if (health) throw new EngineError(health, 'backend-lost');
    } catch (err) {
      this.engine.disposeModel(model);
      throw err;
    }
    if (this.model) this.engine.disposeModel(this.model);
    this.model = model;
    this._setCurrent(candidate);
  }

  _setCurrent(candidate) {
    this.current = { ...candidate };
    this.telemetry.set({ engine: candidate.engine, backend: candidate.backend, variant: candidate.variant });
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
    }
    return out;
  }

  _resultInfo() {
    return { backend: this.current.backend, variant: this.current.variant, version: this.manifest.version, engine: this.current.engine };
  }

  /** Predict with recovery: a failed backend or NaN output moves to the next candidate and retries. */
  async _predict(images) {
    for (let attempt = 0; ; attempt += 1) {
      if (this._busy) await this._busy;
      try {
        const rows = await this.engine.predict(this.model, images, this.manifest.input);
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

  /** Run `fn` while predictions wait. */
  async _exclusive(fn) {
    while (this._busy) await this._busy;
    const p = (async () => fn())();
    this._busy = p.catch(() => {}).finally(() => { this._busy = null; });
    return p;
  }

  /** Move off a failing candidate to the next workable one, reporting each step. */
  async _recover(err) {
    const from = this.current;
    this.failed.add(candidateKey(from));
    this._fallback(from, err, 'predict');
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
      threads: this.engine.tf ? this.engine.threadsUsed() : null,
      device: this.telemetry.context.device,
      memory: this.engine.tf ? this.engine.memory() : null,
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
