/**
 * Latency statistics kept in a fixed-size ring, so `clf.stats()` costs O(window) and 10,000
 * predictions do not grow the JS heap (an unbounded array of timings would).
 * @module stats
 */

/** Rolling latency window plus lifetime counters. */
export class LatencyStats {
  /** @param {number} [window=512] how many recent timings the percentiles are computed from */
  constructor(window = 512) {
    this.window = Math.max(1, window | 0);
    this.buffer = new Float64Array(this.window);
    this.count = 0;
    this.errors = 0;
    this.totalMs = 0;
    this.lastMs = NaN;
  }

  /** @param {number} ms one prediction's duration */
  record(ms) {
    this.buffer[this.count % this.window] = ms;
    this.count += 1;
    this.totalMs += ms;
    this.lastMs = ms;
  }

  /** Count a failed prediction (not timed). */
  recordError() {
    this.errors += 1;
  }

  /**
   * @returns {{predictions: number, errors: number, meanMs: number, p50Ms: number, p95Ms: number, lastMs: number}}
   * NaN for the timing fields until something was recorded.
   */
  summary() {
    const n = Math.min(this.count, this.window);
    const recent = Array.from(this.buffer.subarray(0, n)).sort((a, b) => a - b);
    return {
      predictions: this.count,
      errors: this.errors,
      meanMs: this.count ? this.totalMs / this.count : NaN,
      p50Ms: percentile(recent, 0.5),
      p95Ms: percentile(recent, 0.95),
      lastMs: this.lastMs,
    };
  }
}

/**
 * Nearest-rank percentile of an ascending array (NaN when empty).
 * @param {number[]} sorted ascending values
 * @param {number} q in [0, 1]
 */
export function percentile(sorted, q) {
  if (!sorted.length) return NaN;
  const rank = Math.ceil(q * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))];
}

/**
 * Median of any array (copied, not mutated); NaN when empty.
 * @param {number[]} values
 */
export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * The k most probable classes as plain objects, highest first.
 * @param {ArrayLike<number>} probs one probability per label
 * @param {string[]} labels class names, same order as the model output
 * @param {number} [k=3]
 * @returns {{label: string, p: number}[]}
 */
export function topK(probs, labels, k = 3) {
  const idx = Array.from({ length: probs.length }, (_, i) => i);
  idx.sort((a, b) => probs[b] - probs[a] || a - b);
  return idx.slice(0, Math.max(0, Math.min(k, idx.length))).map((i) => ({
    label: labels[i] !== undefined ? String(labels[i]) : String(i),
    p: probs[i],
  }));
}
