/**
 * The engines a runtime may use, each created (and its runtime downloaded) only when a candidate
 * of it is tried: a visit that runs on LiteRT.js never fetches tf.min.js, and one that stays on
 * TF.js never fetches LiteRT.js's 9.4 MB wasm. Every engine has the same methods (init,
 * useBackend, loadModel, predict, warmup, health, memory, reset, releaseBackend?, disposeModel,
 * threadsUsed, version).
 * @module engines
 */

import { LoadError } from '../errors.js';
import { TfjsEngine } from './tfjs.js';

export class Engines {
  /**
   * @param {{vendor: string, threads?: number, features: object,
   *   factories?: {tfjs?: () => any, litert?: () => any},
   *   runtimes?: {tf?: any, tfWasm?: any, litert?: any}, wasmPaths?: string}} opts
   *   runtimes: what a bundler resolved (used instead of the /vendor scripts)
   */
  constructor(opts) {
    const { vendor, threads, features, wasmPaths } = opts;
    const runtimes = opts.runtimes || {};
    this.factories = {
      tfjs: () => new TfjsEngine({ vendor, threads, tf: runtimes.tf, tfWasm: runtimes.tfWasm, wasmPaths }),
      // engines/litert.js itself is imported on first use: a page that never tries LiteRT.js
      // fetches nothing of it.
      litert: async () => {
        const { LitertEngine } = await import('./litert.js');
        return new LitertEngine({ vendor, threads, features, lib: runtimes.litert });
      },
      ...(opts.factories || {}),
    };
    /**
     * Engines whose code can come down before the runtime decides to start them
     * (engines/litert.js prefetchLitert); an engine given by a factory (tests) has none.
     */
    this.prefetchers = opts.factories && opts.factories.litert ? {} : {
      litert: async () => {
        const { prefetchLitert } = await import('./litert.js');
        return prefetchLitert({ vendor, lib: runtimes.litert });
      },
    };
    /** @type {Map<string, Promise<{ok: boolean, bytes: number, error?: string}>>} */
    this.prefetched = new Map();
    /** @type {Map<string, Promise<any>>} */
    this._creating = new Map();
    /** @type {Map<string, any>} engines whose init() finished */
    this.ready = new Map();
  }

  /** Engine names whose runtime is loaded (what costs nothing more to try). @returns {Set<string>} */
  loaded() {
    return new Set(this.ready.keys());
  }

  /** The engine if it is already started, else null. @param {string} name */
  peek(name) {
    return this.ready.get(name) || null;
  }

  /**
   * Fetch an engine's code without starting it, once (null when it has no prefetch).
   * Never rejects: a failed prefetch only means the start downloads them itself.
   * @param {string} name
   * @returns {Promise<{ok: boolean, bytes: number, error?: string}> | null}
   */
  prefetch(name) {
    const run = this.prefetchers[name];
    if (!run) return null;
    if (!this.prefetched.has(name)) {
      this.prefetched.set(name, run().catch((err) => ({ ok: false, bytes: 0, error: String(err && err.message ? err.message : err) })));
    }
    return this.prefetched.get(name);
  }

  /**
   * Create and start an engine once (later calls share the promise; a failure is retried next time).
   * @param {string} name
   */
  get(name) {
    if (!this._creating.has(name)) {
      const factory = this.factories[name];
      if (!factory) return Promise.reject(new LoadError(`unknown engine ${name}`, 'runtime'));
      const p = (async () => {
        let engine;
        try {
          engine = await factory();
        } catch (err) {
          throw new LoadError(`cannot load the SDK's ${name} engine: ${err && err.message ? err.message : err}`, 'runtime');
        }
        await engine.init();
        this.ready.set(name, engine);
        return engine;
      })();
      this._creating.set(name, p);
      p.catch(() => this._creating.delete(name));
    }
    return this._creating.get(name);
  }
}
