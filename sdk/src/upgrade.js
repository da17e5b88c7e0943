/**
 * The upgrade policy: after the first answer, in idle time, which other candidates to measure on
 * this device, in what order, within what budget, and when to switch.
 *
 * - One *group* per (engine, backend) other than the current one: its variants in preference
 *   order (a variant whose files fail moves on to the next; the first that runs is timed).
 *   TF.js's cpu backend is not measured where wasm exists (its JS kernels are never faster).
 * - Never measured: a software GPU (gpu.js); LiteRT.js on wasm where it cannot run its threaded
 *   build (no crossOriginIsolated / threads / relaxed SIMD: selection.litertPlan's device rules);
 *   an engine whose runtime is not loaded yet when the current path already answers in under
 *   `minMs` (a download with nothing to win: digits answers in 1-2 ms).
 * - Order: cheapest to measure first (candidates.compileCost), so a budget that runs out cuts the
 *   expensive GPU compiles, not the cheap ones. The budget counts each group's *estimated* compile
 *   cost before it starts and its real cost after.
 * - Switch on measured speed: each group's median is timed back to back with the current path's
 *   and the faster one serves from then on (selection.shouldSwitch; no fixed threshold).
 * `mode`: "auto"; "force" (LiteRT.js only, switched to whenever it runs); "off" (no LiteRT.js).
 * Pure logic: node --test covers it.
 * @module upgrade
 */

import { DEFAULT_LITERT_MIN_MS, candidateKey, litertPlan } from './selection.js';
import { compileCost } from './candidates.js';

/** Idle-time budget for measuring alternatives, compile included (ms). */
export const DEFAULT_UPGRADE_BUDGET_MS = 4000;

/**
 * @typedef {{engine: string, backend: string, variants: string[], estimateMs: number}} Group
 * @typedef {{go: boolean, reason: string, queue: Group[], skipped: {engine: string, backend: string, reason: string}[]}} Plan
 */

/**
 * @param {{candidates: import('./candidates.js').RichCandidate[], current: import('./selection.js').Candidate,
 *   failed?: Set<string>, mode?: 'auto' | 'force' | 'off', features: object, currentMs: number,
 *   minMs?: number, loaded?: Set<string>, compileMs?: Record<string, number>, remembered?: object | null}} input
 * @returns {Plan}
 */
export function upgradePlan(input) {
  const { candidates, current, mode = 'auto', features, currentMs, loaded = new Set() } = input;
  const failed = input.failed || new Set();
  const minMs = input.minMs ?? DEFAULT_LITERT_MIN_MS;
  const groups = new Map();
  for (const c of candidates) {
    if (failed.has(candidateKey(c))) continue;
    const key = `${c.engine}/${c.backend}`;
    if (!groups.has(key)) groups.set(key, { engine: c.engine, backend: c.backend, variants: [], software: c.software });
    groups.get(key).variants.push(c.variant);
  }
  const hasWasm = groups.has('tfjs/wasm') || (current.engine === 'tfjs' && current.backend === 'wasm');
  const queue = [];
  const skipped = [];
  for (const [key, g] of groups) {
    const skip = (reason) => skipped.push({ engine: g.engine, backend: g.backend, reason });
    if (key === `${current.engine}/${current.backend}`) continue;
    if (mode === 'off' && g.engine === 'litert') { skip('LiteRT.js switched off (litert: "off")'); continue; }
    if (mode === 'force' && g.engine !== 'litert') continue;
    if (g.software) { skip(`software GPU (${g.backend} runs on the CPU here): not measured`); continue; }
    if (g.engine === 'tfjs' && g.backend === 'cpu' && hasWasm) continue;
    if (g.engine === 'litert' && g.engine !== current.engine) {
      const plan = litertPlan({
        mode: mode === 'force' ? 'force' : 'auto', features, variants: g.variants,
        tfjsMs: g.backend === 'wasm' ? currentMs : Math.max(currentMs, minMs), minMs,
      });
      if (!plan.go && g.backend === 'wasm') { skip(plan.reason); continue; }
    }
    if (mode !== 'force' && !loaded.has(g.engine) && !(currentMs >= minMs)) {
      skip(`the current path answers in ${round1(currentMs)} ms (< ${minMs} ms): ${g.engine} not worth its download`);
      continue;
    }
    queue.push({ engine: g.engine, backend: g.backend, variants: g.variants, estimateMs: compileCost(g, input.compileMs) });
  }
  queue.sort((a, b) => a.estimateMs - b.estimateMs);
  if (!queue.length) {
    const reason = skipped.length ? skipped.map((s) => `${s.engine}/${s.backend}: ${s.reason}`).join('; ') : 'no other candidate here';
    return { go: false, reason, queue, skipped };
  }
  return { go: true, reason: `measuring ${queue.map((g) => `${g.engine}/${g.backend}`).join(', ')} in idle time`, queue, skipped };
}

/**
 * Whether the next group still fits the budget: always when nothing was measured yet (one answer
 * is needed), else when its estimated compile cost fits what is left.
 * @param {Group} group @param {number} spentMs @param {number} budgetMs @param {number} measured groups timed so far
 */
export function fitsBudget(group, spentMs, budgetMs, measured) {
  if (!measured) return true;
  return spentMs + group.estimateMs <= budgetMs;
}

function round1(x) {
  return Math.round(x * 10) / 10;
}
