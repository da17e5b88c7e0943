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
