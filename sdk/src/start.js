/**
 * The start policy: in which order to try candidates for the *first* answer.
 *
 * A repeat visit starts on what this device measured fastest before (the remembered choice, per
 * device key and model version), so it loads only that engine's runtime. A cold visit starts on the
 * candidate that answers soonest — the cheapest to start by candidates.startCost (runtime bytes not
 * yet loaded + model bytes + compile) — and leaves every other candidate to the upgrade policy, in
 * idle time after that first answer. GPU backends carry their shader-compile cost, so a cold visit
 * starts on wasm even where a GPU is faster later; a software GPU (SwiftShader, llvmpipe, WARP)
 * carries a penalty that puts it after everything else, so it is never on the critical path unless
 * it is all there is. The rest of the order is the fallback order when a start fails.
 *
 * Before the manifest has answered, earlyEngine says which engine's runtime to bring down beside
 * the manifest request, so that the runtime is not serialised behind it: the remembered engine (or
 * the only one allowed) is started outright; on a cold visit the engine the cost model makes the
 * likely start for a typical model only has its module code prefetched (no wasm, no compile, no
 * threads), since the manifest may not offer it.
 * Pure logic: node --test covers it.
 * @module start
 */

import { candidateKey } from './selection.js';
import { startCost } from './candidates.js';

/**
 * Candidates in the order to try for the first answer.
 * @param {import('./candidates.js').RichCandidate[]} candidates
 * @param {{remembered?: import('./selection.js').Candidate | null, loaded?: Set<string>,
 *   compileMs?: Record<string, number>}} [state]
 * @returns {import('./candidates.js').RichCandidate[]}
 */
export function startOrder(candidates, state = {}) {
  const costed = candidates.map((c, i) => ({ c, i, cost: startCost(c, state) }));
  costed.sort((a, b) => a.cost - b.cost || a.c.index - b.c.index || a.i - b.i);
  const out = costed.map((x) => x.c);
  const r = state.remembered;
  if (r) {
    const k = candidateKey(r);
    const at = out.findIndex((c) => candidateKey(c) === k);
    if (at > 0) out.unshift(...out.splice(at, 1));
  }
  return out;
}

/**
 * Whether a remembered entry is a finished measurement (the upgrade ran to its end on this device
 * and model version) rather than only the start of an earlier visit, which still gets an upgrade.
 * @param {{measured?: boolean} | null | undefined} remembered
 */
export function isMeasured(remembered) {
  return Boolean(remembered) && remembered.measured !== false;
}

/**
 * The engine to bring down while the manifest request is in flight, and how far.
 * - `start`: the engine a repeat visit ran on (`hint`), or the only engine the options allow:
 *   started outright (its runtime is needed whatever the manifest says);
 * - `prefetch`: a cold visit on a crossOriginIsolated page with relaxed SIMD, where LiteRT.js runs
 *   threaded and the cost model (candidates.startCost) makes it the cheapest start for any model
 *   over ~1.3 MB that has a TFLite variant (BrowserML's converter writes both engines by default):
 *   its module code is fetched (not its wasm), and used if the start policy then picks it;
 * - null: nothing early (no threads: TF.js and LiteRT.js are too close to guess without the
 *   manifest; LiteRT.js turned off or not allowed, nor any of its backends or `tflite-` variants).
 * @param {{hint?: {engine?: string} | null, engines?: string[], litert?: string,
 *   backends?: string[], variants?: string[],
 *   features: {wasm: boolean, threads: boolean, relaxedSimd: boolean}}} opts
 *   backends / variants: the options' allow-lists (LiteRT.js variants are named `tflite-*`)
 * @returns {{engine: string, mode: 'start' | 'prefetch'} | null}
 */
export function earlyEngine({
  hint, engines, litert, backends, variants, features,
}) {
  const allowed = (e) => (!engines || engines.includes(e)) && !(e === 'litert' && litert === 'off');
  if (hint && hint.engine && allowed(hint.engine)) return { engine: hint.engine, mode: 'start' };
  if (engines && engines.length === 1) return { engine: engines[0], mode: 'start' };
  const litertBackend = !backends || !backends.length || backends.some((b) => b === 'wasm' || b === 'webgpu');
  const litertVariant = !variants || !variants.length || variants.some((v) => v.startsWith('tflite-'));
  if (allowed('litert') && litertBackend && litertVariant && features.wasm && features.threads && features.relaxedSimd) {
    return { engine: 'litert', mode: 'prefetch' };
  }
  return null;
}
