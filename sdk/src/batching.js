/**
 * Batch sizes for classifyBatch: the inputs are run in chunks of the size the current path does
 * best at. A GPU backend amortises its per-call overhead (dispatch, read-back) over a batch; wasm
 * gains little past a handful; LiteRT.js's TFLite exports are pinned to batch 1 (a batch is a
 * loop there). Until `measureBatches()` has timed batch 1/8/32 on the path (ms per image; the
 * result is remembered with the choice), these defaults apply.
 * @module batching
 */

/** Default chunk size per backend before anything was measured. */
export const DEFAULT_BATCH = Object.freeze({ webgl: 32, webgpu: 32, wasm: 8, cpu: 8 });

/**
 * @param {{engine: string, backend: string} | null} candidate
 * @returns {number}
 */
export function defaultBatch(candidate) {
  if (!candidate || candidate.engine === 'litert') return 1;
  return DEFAULT_BATCH[candidate.backend] || 1;
}

/**
 * Split items into consecutive chunks of at most `size`.
 * @template T @param {T[]} items @param {number} size @returns {T[][]}
 */
export function batchChunks(items, size) {
  const n = Math.max(1, Math.floor(size) || 1);
  const out = [];
  for (let i = 0; i < items.length; i += n) out.push(items.slice(i, i + n));
  return out;
}

/**
 * The best batch size from ms-per-image figures (smallest on a tie).
 * @param {Record<string, number>} perImage e.g. {1: 9.1, 8: 7.9, 32: 8.2}
 */
export function bestBatch(perImage) {
  const rows = Object.entries(perImage).filter(([, ms]) => Number.isFinite(ms)).map(([n, ms]) => [Number(n), ms]);
  rows.sort((a, b) => a[1] - b[1] || a[0] - b[0]);
  return rows.length ? rows[0][0] : 1;
}
