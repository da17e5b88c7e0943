/**
 * Carrying out the upgrade policy (upgrade.js decides *what*; this does it on a live runtime):
 * each (engine, backend) group is built — off the exclusive section when it is another engine, so
 * predictions keep flowing; inside it when it shares the current engine's global backend — then
 * timed back to back with the current path while predictions wait, and adopted when faster. A
 * remembered GPU path is promoted the same way once the first answer is out. Every failure is a
 * `fallback` event; the current path keeps serving. Functions of the runtime (`rt`), split from
 * runtime.js: the upgrade's scheduling in idle time, the current path's timing, its record.
 * @module upgrader
 */

import { EngineError } from './errors.js';
import { candidateKey, shareDeadline, shouldSwitch, timePairs, timeRuns } from './selection.js';
import { median } from './stats.js';
import { fitsBudget, upgradePlan } from './upgrade.js';

/**
 * Paired timing of a race (timePairs): at least this many runs a side within the selection
 * budget, at most PAIRED_MAX_RUNS (a 5 ms path: 9 pairs in ~90 ms).
 */
export const PAIRED_MIN_RUNS = 3;
export const PAIRED_MAX_RUNS = 9;

/**
 * Move to the remembered GPU path (measured fastest on an earlier visit) now that the first
 * answer is out: build it while predictions wait, adopt it; a failure is a fallback and the CPU
 * path keeps serving.
 */
export async function promoteRemembered(rt) {
  const t0 = now();
  const target = rt._promote;
  rt._promote = null;
  const known = rt.candidates.find((c) => candidateKey(c) === candidateKey(target));
  if (!known || known.software) {
    rt._fallback(target, new EngineError('the remembered GPU path is not available now', 'backend-init'), 'upgrade');
    return rt._upgradeEnd('failed', [], t0, 'the remembered GPU path is not available now (see fallbacks)');
  }
  const sameEngine = target.engine === rt.current.engine;
  let built = null;
  try {
    await rt._exclusive(async () => {
      try {
        built = await rt._build(target);
        if (sameEngine) await built.engine.useBackend(target.backend);
        rt._adopt(target, built);
      } catch (err) {
        if (sameEngine) await rt.engine.useBackend(rt.current.backend).catch(() => {});
        throw err;
      }
    });
  } catch (err) {
    rt._markFailed(target, err);
    rt._fallback(target, err, 'upgrade');
    rt.upgrade = { state: 'failed', reason: 'the remembered GPU path failed (see fallbacks)', ms: now() - t0, results: [] };
    rt._remember({ measured: false });
    return rt.upgrade;
  }
  rt.upgrade = {
    state: 'remembered', reason: `measured fastest on this device and model version before (${candidateKey(target)}); first answer from the CPU path`,
    ms: now() - t0, results: [], threads: rt.engine.threadsUsed(),
  };
  return rt.upgrade;
}

/** Measure the plan's groups in order within the upgrade budget; record the outcome. */
export async function runUpgrade(rt, plan) {
  const t0 = now();
  const force = rt.options.litert === 'force';
  const results = [];
  rt.upgrade = { ...rt.upgrade, state: 'loading' };
  let spent = 0;
  let measured = 0;
  let switched = false;
  for (const group of plan.queue) {
    if (rt.disposed) break;
    if (!fitsBudget(group, spent, rt.options.upgradeBudgetMs, measured)) {
      results.push({ candidate: { engine: group.engine, backend: group.backend, variant: group.variants[0] }, ok: false, error: 'skipped: upgrade budget spent' });
      continue;
    }
    const g0 = now();
    const outcome = await measureGroup(rt, group, force);
    spent += now() - g0;
    results.push(...outcome.results);
    if (outcome.timed) measured += 1;
    if (outcome.switched) switched = true;
  }
  const anyOk = results.some((r) => r.ok);
  const state = switched ? 'switched' : (anyOk ? 'kept' : 'failed');
  return rt._upgradeEnd(state, results, t0);
}

/**
 * One (engine, backend) group: its variants in order until one builds, then timed against the
 * current path; switch when faster (or forced). Building happens off the exclusive section when
 * the candidate's engine is another one than the current (predictions keep flowing); a TF.js
 * backend shares TF.js's global backend with the current model, so it is built exclusively.
 */
async function measureGroup(rt, group, force) {
  const results = [];
  for (const variant of group.variants) {
    const candidate = { engine: group.engine, backend: group.backend, variant };
    if (rt._isFailed(candidate) || rt.disposed) continue;
    let artifacts;
    try {
      ({ artifacts } = await rt._files(variant, group.engine));
    } catch (err) {
      rt.failed.add(`${group.engine}//${variant}`);
      results.push({ candidate, ok: false, error: String(err && err.message ? err.message : err) });
      rt._fallback(candidate, err, 'upgrade');
      continue;
    }
    try {
      const outcome = await race(rt, candidate, artifacts, force);
      results.push(outcome.result);
      return { results, timed: true, switched: outcome.switched };
    } catch (err) {
      rt._markFailed(candidate, err);
      results.push({ candidate, ok: false, error: String(err && err.message ? err.message : err) });
      rt._fallback(candidate, err, 'upgrade');
      if (err && err.code === 'backend-init') break;
    }
  }
  return { results, timed: false, switched: false };
}

/**
 * Build a candidate, time it and the current path back to back (predictions wait while they
 * are timed), inside the selection budget; adopt it when faster.
 */
async function race(rt, candidate, artifacts, force) {
  const sameEngine = candidate.engine === rt.current.engine;
  let built = null;
  if (!sameEngine) built = await rt._build(candidate, artifacts);
  let adopted = false;
  try {
    return await rt._exclusive(async () => {
      try {
        return await timeAndDecide(rt, candidate, artifacts, built, sameEngine, force, (b) => { built = b; }, () => { adopted = true; });
      } finally {
        // A TF.js / LiteRT.js backend is engine-wide state: give it back to the current model.
        if (sameEngine && !adopted) await rt.engine.useBackend(rt.current.backend).catch(() => {});
      }
    });
  } finally {
    if (!adopted && built) {
      built.engine.disposeModel(built.model);
      // The loser's memory goes: its backend (GPU buffers, texture pool, wasm heap), or every
      // backend of an engine that no longer serves anything.
      if (sameEngine && typeof built.engine.releaseBackend === 'function') built.engine.releaseBackend(candidate.backend);
      else if (!sameEngine) rt._releaseEngine(built.engine);
    }
  }
}

/** The exclusive part of a race (see race): build (same engine), time both, decide, adopt. */
async function timeAndDecide(rt, candidate, artifacts, built, sameEngine, force, setBuilt, setAdopted) {
  const spec = rt.manifest.input;
  const budget = rt.options.selectionBudgetMs;
  if (sameEngine) {
    built = await rt._build(candidate, artifacts);
    setBuilt(built);
  }
  {
      const start = now();
      const current = { ...rt.current };
      let times;
      let base;
      if (!sameEngine || built.engine.backendPerModel) {
        // Each model runs on its own backend (another engine, or LiteRT.js whose models carry
        // their accelerator): time the two in alternation, so drift falls on both alike.
        ({ a: times, b: base } = await timePairs(() => built.engine.warmup(built.model, spec), () => rt.engine.warmup(rt.model, spec),
          { deadline: start + budget, minRuns: PAIRED_MIN_RUNS, maxRuns: PAIRED_MAX_RUNS }));
        if (built.engine.health()) throw new EngineError(built.engine.health(), 'backend-lost');
      } else {
        // One engine-wide backend (TF.js): each side's runs together, one backend switch.
        times = await timeRuns(() => built.engine.warmup(built.model, spec), { deadline: shareDeadline(start, budget, 2, now()), minRuns: 1, maxRuns: 5 });
        if (built.engine.health()) throw new EngineError(built.engine.health(), 'backend-lost');
        await rt.engine.useBackend(current.backend);
        base = await timeRuns(() => rt.engine.warmup(rt.model, spec), { deadline: shareDeadline(start, budget, 1, now()), minRuns: 1, maxRuns: 5 });
      }
      const ms = median(times);
      const result = {
        candidate, ok: true, ms, runs: times.length, warmupMs: built.warmupMs, loadMs: built.loadMs,
        against: { candidate: current, ms: median(base), runs: base.length },
      };
      const forced = force && candidate.engine === 'litert' && current.engine !== 'litert';
      if (rt.disposed || !shouldSwitch(ms, result.against.ms, forced)) {
        rt._measuredMs = { key: candidateKey(current), ms: result.against.ms };
        return { switched: false, result };
      }
      if (sameEngine) await built.engine.useBackend(candidate.backend);
      rt._adopt(candidate, built);
      setAdopted();
      rt._measuredMs = { key: candidateKey(candidate), ms };
      return { switched: true, result };
  }
}

function now() {
  return performance.now();
}

/**
 * Wait for idle time, then either promote a remembered GPU path or time the current path, ask
 * the upgrade policy for a plan and run it. Never rejects: a failure ends as state `failed`.
 * @param {any} rt the runtime @returns {Promise<object>} the final `upgrade` record
 */
export function scheduleUpgrade(rt) {
  rt.upgrade = { state: 'pending', reason: 'waiting for idle time', results: [] };
  return whenIdle().then(async () => {
    if (rt.disposed) return rt.upgrade;
    await rt._gpuFacts();
    if (rt._promote) return promoteRemembered(rt);
    const o = rt.options;
    const currentMs = await timeCurrent(rt);
    const plan = upgradePlan({
      candidates: rt.candidates, current: rt.current, failed: rt._failedKeys(), mode: o.litert || 'auto',
      features: rt.features, currentMs, minMs: o.litertMinMs, loaded: rt._loadedRuntimes(),
      compileMs: rt.compileMs,
    });
    rt.upgrade = { state: plan.go ? 'pending' : 'skipped', reason: plan.reason, skipped: plan.skipped, results: [] };
    return plan.go ? runUpgrade(rt, plan) : upgradeEnd(rt, 'skipped', [], now(), plan.reason);
  }).catch((err) => {
    rt.upgrade = { ...rt.upgrade, state: 'failed', error: String(err && err.message ? err.message : err) };
  }).then(() => rt.upgrade);
}

/**
 * The current path's model time a prediction (zeros input, no decoding), a few runs while
 * predictions wait: what the upgrade's download gate compares with.
 * @param {any} rt the runtime @returns {Promise<number>}
 */
export async function timeCurrent(rt) {
  const spec = rt.manifest.input;
  const times = await rt._exclusive(() => timeRuns(() => rt.engine.warmup(rt.model, spec), { deadline: now() + 200, minRuns: 2, maxRuns: 5 }));
  const ms = median(times);
  rt._measuredMs = { key: candidateKey(rt.current), ms };
  return ms;
}

/**
 * Record the upgrade's outcome on the runtime and remember the choice (with TF.js's verdict on
 * LiteRT.js when it stays on TF.js).
 * @param {any} rt the runtime @param {string} state @param {object[]} results @param {number} t0 @param {string} [reason]
 */
export function upgradeEnd(rt, state, results, t0, reason) {
  const reasons = {
    switched: `${rt.current.engine}/${rt.current.backend} measured fastest`,
    kept: `${rt.current.engine}/${rt.current.backend} measured fastest`,
    failed: 'every candidate measured failed (see fallbacks)',
  };
  rt.upgrade = {
    state, reason: reason || reasons[state], ms: now() - t0, results, skipped: rt.upgrade.skipped || [],
    threads: rt.engine ? rt.engine.threadsUsed() : null,
  };
  rt.selection = { ...rt.selection, upgrade: results };
  if (!rt.disposed) {
    const verdict = state === 'kept' ? { litert: 'slower' } : state === 'failed' ? { litert: 'failed' } : {};
    rt._remember({ measured: true, ...(rt.current.engine === 'tfjs' ? verdict : {}) });
  }
  return rt.upgrade;
}

/** Resolve when the thread is idle (requestIdleCallback; a timer in workers and old browsers). */
function whenIdle() {
  return new Promise((resolve) => {
    if (typeof globalThis.requestIdleCallback === 'function') globalThis.requestIdleCallback(() => resolve(), { timeout: 2000 });
    else setTimeout(resolve, 50);
  });
}
