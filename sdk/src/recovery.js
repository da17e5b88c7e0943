/**
 * Predictions that survive a failing candidate: an output check (NaN, all zeros), the reach of a
 * failure (one candidate, a backend for all its variants, a variant's files for all backends),
 * the order to try after a failure (measured candidates first, then same-engine fallbacks, then
 * the start policy's order) and the `fallback` report of each step. The pure parts take plain
 * data (node --test covers them); `predict` and `recover` are functions of the runtime (`rt`).
 * @module recovery
 */

import { EngineError, InputError } from './errors.js';
import { candidateKey, fallbackCandidates } from './selection.js';
import { startOrder } from './start.js';

/** Errors that condemn a variant's files (for every backend of its engine), not one candidate. */
export const FILE_ERRORS = new Set(['integrity', 'network', 'http', 'not-found', 'manifest']);

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

/**
 * Record a failure's reach in `failed`: the candidate; a backend that cannot start, for every
 * variant of its engine; bad files, for every backend of the variant's engine.
 * @param {Set<string>} failed @param {import('./selection.js').Candidate} candidate @param {any} err
 */
export function markFailed(failed, candidate, err) {
  failed.add(candidateKey(candidate));
  if (err && err.code === 'backend-init') failed.add(`${candidate.engine}/${candidate.backend}/`);
  if (err && FILE_ERRORS.has(err.code)) failed.add(`${candidate.engine}//${candidate.variant}`);
}

/** Whether `c` is ruled out by `failed`. @param {Set<string>} failed @param {import('./selection.js').Candidate} c */
export function isFailed(failed, c) {
  return failed.has(candidateKey(c)) || failed.has(`${c.engine}//${c.variant}`) || failed.has(`${c.engine}/${c.backend}/`);
}

/** Keys of the candidates `failed` rules out (what the upgrade must not measure). */
export function failedKeys(candidates, failed) {
  const out = new Set();
  for (const c of candidates) if (isFailed(failed, c)) out.add(candidateKey(c));
  return out;
}

/**
 * The report of one fallback: which candidate, in which phase, with which code and reason.
 * @param {import('./selection.js').Candidate} candidate @param {any} err @param {string} phase
 */
export function fallbackEntry(candidate, err, phase) {
  return {
    from: [candidate.engine, candidate.backend, candidate.variant].filter(Boolean).join('/'),
    phase,
    code: (err && err.code) || 'error',
    reason: String(err && err.message ? err.message : err),
  };
}

/**
 * Candidates to try after `from` failed with `err`, best first, without duplicates, failed ones or
 * `from` itself: the upgrade's measured candidates by speed; then, for a broken backend (lost
 * context or device, kernel error), the same engine's other backends for the same variant, for bad
 * outputs (`nan`) the next variant; then the start policy's order.
 * @param {import('./selection.js').Candidate} from @param {any} err
 * @param {{candidates: import('./candidates.js').RichCandidate[], measured?: object[],
 *   failed: Set<string>, loaded?: Set<string>, compileMs?: Record<string, number>}} state
 *   measured: the upgrade's results ({ok, ms, candidate})
 */
export function recoveryOrder(from, err, state) {
  const { candidates, failed } = state;
  const kind = err && err.code === 'nan' ? 'variant' : 'backend';
  const sameEngine = candidates.filter((c) => c.engine === from.engine);
  const variants = [...new Set(sameEngine.map((c) => c.variant))];
  const measured = (state.measured || []).filter((r) => r.ok).sort((a, b) => a.ms - b.ms).map((r) => r.candidate);
  const backends = [...new Set([...measured.filter((c) => c.engine === from.engine).map((c) => c.backend), ...sameEngine.filter((c) => !c.software).map((c) => c.backend), ...sameEngine.map((c) => c.backend)])];
  const tried = [
    ...measured,
    ...fallbackCandidates(from, kind, { variants, backends }, failedKeys(candidates, failed)),
    ...startOrder(candidates, { loaded: state.loaded, compileMs: state.compileMs }),
  ];
  const seen = new Set();
  const out = [];
  for (const c of tried) {
    const key = candidateKey(c);
    if (seen.has(key) || isFailed(failed, c) || key === candidateKey(from)) continue;
    seen.add(key);
    out.push({ engine: c.engine, backend: c.backend, variant: c.variant });
  }
  return out;
}

/**
 * Predict with recovery: a failed backend or NaN output moves to the next candidate and retries
 * (at most 3 times); an input error is the caller's and is thrown at once.
 * @param {any} rt the runtime @param {ImageData[]} images @returns {Promise<Float32Array[]>}
 */
export async function predict(rt, images) {
  for (let attempt = 0; ; attempt += 1) {
    await rt.gate.turn();
    try {
      const rows = await rt.gate.track(rt.engine.predict(rt.model, images, rt.manifest.input));
      const health = rt.engine.health();
      if (health) throw new EngineError(health, 'backend-lost');
      const bad = checkOutputs(rows);
      if (bad) throw new EngineError(`prediction gave ${bad}`, 'nan');
      return rows;
    } catch (err) {
      if (err instanceof InputError || attempt >= 3) throw err;
      await rt._exclusive(() => recover(rt, err));
    }
  }
}

/**
 * Move off a failing candidate along recoveryOrder; each step is reported, the broken model and
 * backend go first (a lost context holds nothing worth keeping).
 * @param {any} rt the runtime @param {any} err
 */
export async function recover(rt, err) {
  const from = rt.current;
  rt._markFailed(from, err);
  rt._fallback(from, err, 'predict');
  const tried = recoveryOrder(from, err, {
    candidates: rt.candidates, measured: rt.selection.upgrade, failed: rt.failed,
    loaded: rt._loadedRuntimes(), compileMs: rt.compileMs,
  });
  for (const candidate of tried) {
    // recoveryOrder ran before the attempts: a candidate an earlier attempt ruled out is skipped
    if (rt._isFailed(candidate)) continue;
    try {
      if (rt.model) rt.engine.disposeModel(rt.model);
      rt.model = null;
      await rt._activate(candidate);
      rt._remember({ measured: false });
      return;
    } catch (e) {
      rt._markFailed(candidate, e);
      rt._fallback(candidate, e, 'recover');
    }
  }
  throw new EngineError(`no backend or variant left after: ${err && err.message ? err.message : err}`, 'exhausted');
}
