/**
 * A candidate's life in the runtime: built (engine, backend, model, warm-up, output check) without
 * serving, adopted (serves from now on; the previous model disposed), and what no longer serves
 * released — a TF.js backend instance (GPU textures / buffers, wasm heap) when another backend of
 * the same engine serves, every backend of an engine when another engine serves. Plus the memory
 * guard's rebuild and the classifier's dispose. Functions of the runtime (`rt`) plus the pure
 * release rule node --test covers.
 * @module lifecycle
 */

import { EngineError } from './errors.js';
import { checkOutputs } from './recovery.js';

/**
 * What to free when `current` replaces `old`: nothing (same engine and backend), the old engine
 * whole (another engine serves), or the old backend only (another backend of the same engine).
 * @param {import('./selection.js').Candidate} old @param {import('./selection.js').Candidate} current
 * @returns {'none' | 'engine' | 'backend'}
 */
export function releaseScope(old, current) {
  if (old.engine === current.engine && old.backend === current.backend) return 'none';
  return old.engine !== current.engine ? 'engine' : 'backend';
}

/**
 * Build `candidate` (engine, backend, model, warm-up, check) without making it current; its
 * compile + first-run time is recorded in rt.compileMs.
 * @param {any} rt the runtime @param {import('./selection.js').Candidate} candidate @param {object} [artifacts]
 * @returns {Promise<{engine: any, model: any, loadMs: number, warmupMs: number}>}
 */
export async function build(rt, candidate, artifacts) {
  const engine = await rt.engines.get(candidate.engine);
  const arts = artifacts || (await rt._files(candidate.variant, candidate.engine)).artifacts;
  const tl = now();
  await engine.useBackend(candidate.backend);
  rt.progress.phase('compile', candidate);
  const model = await engine.loadModel(arts);
  const tw = now();
  try {
    rt.progress.phase('warmup', candidate);
    const bad = checkOutputs(await engine.warmup(model, rt.manifest.input));
    if (bad) throw new EngineError(`warm-up gave ${bad}`, 'nan');
    const health = engine.health();
    if (health) throw new EngineError(health, 'backend-lost');
  } catch (err) {
    engine.disposeModel(model);
    throw err;
  }
  const warmupMs = now() - tw;
  rt.compileMs[`${candidate.engine}/${candidate.backend}`] = now() - tl;
  return { engine, model, loadMs: tw - tl, warmupMs };
}

/** Serve from `built` now; dispose the old model and release what its engine/backend held. */
export function adopt(rt, candidate, built) {
  const old = rt.current;
  const oldEngine = rt.engine;
  if (rt.model && oldEngine) oldEngine.disposeModel(rt.model);
  rt.engine = built.engine;
  rt.model = built.model;
  rt._setCurrent(candidate);
  if (old && oldEngine) release(rt, old, oldEngine);
}

/** Free the memory of a candidate that no longer serves (see releaseScope). */
export function release(rt, old, oldEngine) {
  const scope = releaseScope(old, rt.current);
  if (scope === 'engine') releaseEngine(rt, oldEngine);
  if (scope !== 'backend') return;
  try {
    if (typeof oldEngine.releaseBackend === 'function') oldEngine.releaseBackend(old.backend);
  } catch { /* best effort: memory only */ }
}

/** Free every backend of an engine that serves nothing now (TF.js: engine().reset()). */
export function releaseEngine(rt, engine) {
  if (engine === rt.engine) return;
  try {
    if (typeof engine.releaseAll === 'function') engine.releaseAll();
    else if (engine.name === 'tfjs') engine.reset();
  } catch { /* memory only */ }
}

/**
 * Free everything the backend holds and reload the model from the cache on a fresh backend.
 * @param {any} rt the runtime @param {string} reason
 */
export async function rebuild(rt, reason) {
  const t0 = now();
  const before = rt.engine.memory();
  rt.engine.disposeModel(rt.model);
  rt.model = null;
  await rt.engine.reset();
  const built = await rt._build(rt.current);
  rt.model = built.model;
  rt.rebuilds += 1;
  rt.guard.rebuilds += 1;
  rt.telemetry.emit('memory', { action: 'rebuilt', reason, before, after: rt.engine.memory(), ms: now() - t0 });
}

/** Free the model; the runtime cannot be used afterwards. @param {any} rt */
export function dispose(rt) {
  if (rt.disposed) return;
  rt.disposed = true;
  if (rt.engine) rt.engine.disposeModel(rt.model);
  rt.model = null;
}

function now() {
  return performance.now();
}
