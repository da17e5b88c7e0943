/**
 * Memory guard: every N predictions read the engine's memory counters and compare them with a
 * budget. Exceeding it is answered by the runtime with a rebuild (fresh backend, model reloaded
 * from the cache) instead of letting the tab grow until the browser kills it — the reference team's
 * WebGL crashes after 50-100 predictions.
 *
 * The SDK itself does not leak (every intermediate lives in tf.tidy, outputs are disposed after
 * reading), so in practice the guard catches backend-internal growth: texture-pool fragmentation
 * on WebGL, or tensors a host page created on the shared tf instance.
 * @module memory
 */

/** @typedef {{numTensors?: number, numBytes?: number, numBytesInGPU?: number}} MemoryInfo */

export const DEFAULT_CHECK_EVERY = 100;
export const DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024;

/**
 * Normalise the user's `memoryBudget` option: a number means bytes (CPU-side and GPU-side
 * each); an object may set numBytes, numBytesInGPU and numTensors separately.
 * @param {number | MemoryInfo | undefined} budget
 * @param {number} [modelBytes] in-memory size of the loaded weights (the budget is at least 2x it)
 * @returns {{numBytes: number, numBytesInGPU: number, numTensors: number}}
 */
export function normaliseBudget(budget, modelBytes = 0) {
  const floor = 2 * modelBytes;
  if (typeof budget === 'number') {
    return { numBytes: budget, numBytesInGPU: budget, numTensors: Infinity };
  }
  const b = budget || {};
  return {
    numBytes: b.numBytes ?? Math.max(DEFAULT_BUDGET_BYTES, floor),
    numBytesInGPU: b.numBytesInGPU ?? Math.max(DEFAULT_BUDGET_BYTES, floor),
    numTensors: b.numTensors ?? Infinity,
  };
}

/**
 * Which limits a reading exceeds.
 * @param {MemoryInfo} info
 * @param {{numBytes: number, numBytesInGPU: number, numTensors: number}} budget
 * @returns {string[]} e.g. ["numBytes 300000000 > 268435456"]
 */
export function overBudget(info, budget) {
  const out = [];
  for (const k of ['numBytes', 'numBytesInGPU', 'numTensors']) {
    const v = info[k];
    if (typeof v === 'number' && v > budget[k]) out.push(`${k} ${v} > ${budget[k]}`);
  }
  return out;
}

/** Counts predictions and says when a check is due and whether it failed. */
export class MemoryGuard {
  /**
   * @param {{every?: number, budget?: number | MemoryInfo, modelBytes?: number}} [opts]
   */
  constructor(opts = {}) {
    this.every = Math.max(1, opts.every ?? DEFAULT_CHECK_EVERY);
    this.budget = normaliseBudget(opts.budget, opts.modelBytes);
    this.sinceCheck = 0;
    this.checks = 0;
    this.rebuilds = 0;
    /** @type {MemoryInfo | null} */
    this.last = null;
  }

  /**
   * Call after each prediction.
   * @param {() => MemoryInfo} read the engine's counters (cheap, synchronous)
   * @returns {{info: MemoryInfo, exceeded: string[]} | null} null when no check was due
   */
  tick(read) {
    this.sinceCheck += 1;
    if (this.sinceCheck < this.every) return null;
    this.sinceCheck = 0;
    this.checks += 1;
    const info = read();
    this.last = info;
    return { info, exceeded: overBudget(info, this.budget) };
  }
}
