/**
 * What to run on: an (engine, backend, variant) *candidate*, picked by measuring on this device.
 *
 * Variants are tried in the manifest's preference order (smallest download first: uint8, float16,
 * float32) and the first that loads, verifies and gives finite outputs is used — within one engine
 * the variants compute at the same speed (TF.js dequantizes uint8/float16 weights to float32 at
 * load), so the download size decides. Backends are *timed*: each available one gets a warm-up and
 * a few predictions inside a shared budget (1.5 s by default) and the fastest median wins. The
 * winner is remembered per device key and model version, so a repeat visit skips the probe.
 *
 * The candidate carries the engine so a second engine (LiteRT.js, issue 8) slots in as more
 * candidates: its variants do differ in speed (int8 kernels), and the same timing loop decides.
 *
 * Everything here is pure logic (no TF.js, no DOM) so node --test covers it.
 * @module selection
 */

/** @typedef {{engine: string, backend: string, variant: string}} Candidate */
/** @typedef {{candidate: Candidate, ok: boolean, ms?: number, warmupMs?: number, runs?: number, error?: string}} ProbeResult */

/**
 * Order in which backends are *probed* (not chosen): it only matters when the budget runs out
 * before every backend was timed, so the usually-fast ones go first and the CPU reference last.
 */
export const PROBE_ORDER = Object.freeze(['webgpu', 'wasm', 'webgl', 'cpu']);

export const DEFAULT_BUDGET_MS = 1500;

/** @param {Candidate} c @returns {string} e.g. "tfjs/wasm/uint8" */
export function candidateKey(c) {
  return `${c.engine}/${c.backend}/${c.variant}`;
}

/**
 * localStorage key of the remembered choice.
 * @param {string} device from device.deviceKey()
 * @param {string} model
 * @param {number | string} version
 */
export function choiceKey(device, model, version) {
  return `browserml:choice:${device}:${model}:v${version}`;
}

/**
 * Sort available backends into probe order; unknown names go after known ones, in given order.
 * @param {string[]} available
 * @param {string[]} [allowed] restrict to these (user option)
 * @returns {string[]}
 */
export function probeOrder(available, allowed) {
  const set = allowed && allowed.length ? available.filter((b) => allowed.includes(b)) : [...available];
  const rank = (b) => {
    const i = PROBE_ORDER.indexOf(b);
    return i < 0 ? PROBE_ORDER.length : i;
  };
  return set.map((b, i) => [b, i]).sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1]).map(([b]) => b);
}

/**
 * Variants of one engine in the order to try them: the manifest's preference order, with a
 * remembered variant first (a repeat visit goes straight to what worked), skipping variants the
 * manifest does not offer.
 * @param {{name: string, engine?: string, offered?: boolean}[]} variants manifest order
 * @param {string} engine
 * @param {string} [remembered] variant name that won last time
 * @param {string[]} [allowed] restrict to these names (user option)
 * @returns {string[]}
 */
export function variantOrder(variants, engine, remembered, allowed) {
  const names = variants
    .filter((v) => (v.engine || 'tfjs') === engine && v.offered !== false)
    .filter((v) => !allowed || !allowed.length || allowed.includes(v.name))
    .map((v) => v.name);
  if (remembered && names.includes(remembered)) {
    return [remembered, ...names.filter((n) => n !== remembered)];
  }
  return names;
}

/**
 * Successful probe results, fastest first (by median ms; ties keep probe order).
 * @param {ProbeResult[]} results
 * @returns {ProbeResult[]}
 */
export function rank(results) {
  return results
    .map((r, i) => [r, i])
    .filter(([r]) => r.ok && Number.isFinite(r.ms))
    .sort((a, b) => a[0].ms - b[0].ms || a[1] - b[1])
    .map(([r]) => r);
}

/**
 * Candidates to try, in order, after `current` failed.
 * - kind "backend" (the backend broke: context lost, kernel error): same variant on the other
 *   backends in measured order, then later variants.
 * - kind "variant" (integrity, NaN, load failure of the files): later variants on the same backend,
 *   then the other backends.
 * Anything in `failed` (candidate keys) is skipped.
 * @param {Candidate} current
 * @param {'backend' | 'variant'} kind
 * @param {{variants: string[], backends: string[]}} options variants in preference order, backends ranked fastest first
 * @param {Set<string>} failed
 * @returns {Candidate[]}
 */
export function fallbackCandidates(current, kind, options, failed) {
  const { engine } = current;
  const vIdx = options.variants.indexOf(current.variant);
  const laterVariants = options.variants.slice(vIdx + 1);
  const otherBackends = options.backends.filter((b) => b !== current.backend);
  const out = [];
  const push = (variant, backend) => {
    const c = { engine, backend, variant };
    const k = candidateKey(c);
    if (!failed.has(k) && k !== candidateKey(current) && !out.some((o) => candidateKey(o) === k)) out.push(c);
  };
  if (kind === 'backend') {
    for (const b of otherBackends) push(current.variant, b);
    for (const v of laterVariants) for (const b of otherBackends) push(v, b);
  } else {
    for (const v of laterVariants) push(v, current.backend);
    for (const v of laterVariants) for (const b of otherBackends) push(v, b);
  }
  return out;
}

/**
 * Time `runOnce` a few times inside a deadline. At least `minRuns` runs happen even past the
 * deadline (one number is needed to compare), at most `maxRuns`. Returns each run's ms.
 * @param {() => Promise<unknown>} runOnce
 * @param {{deadline: number, minRuns?: number, maxRuns?: number, now?: () => number}} opts
 * @returns {Promise<number[]>}
 */
export async function timeRuns(runOnce, opts) {
  const now = opts.now || (() => performance.now());
  const minRuns = opts.minRuns ?? 1;
  const maxRuns = opts.maxRuns ?? 5;
  const times = [];
  while (times.length < maxRuns) {
    if (times.length >= minRuns && now() >= opts.deadline) break;
    const t0 = now();
    await runOnce();
    const ms = now() - t0;
    times.push(ms);
    // A run that alone takes longer than the time left will not fit another: stop early.
    if (times.length >= minRuns && now() + ms > opts.deadline) break;
  }
  return times;
}

/**
 * Time two paths in alternation (A B, B A, A B, ...) until both have `minRuns` and the deadline
 * has passed, or both have `maxRuns`: whatever drifts while they are timed — clocks ramping up
 * after a compile, a thread pool waking, another tab — falls on both alike, where timing one
 * path's runs and then the other's hands the drift to one of them.
 * @param {() => Promise<any>} runA @param {() => Promise<any>} runB
 * @param {{deadline: number, minRuns?: number, maxRuns?: number, now?: () => number}} opts
 * @returns {Promise<{a: number[], b: number[]}>}
 */
export async function timePairs(runA, runB, opts) {
  const now = opts.now || (() => performance.now());
  const minRuns = opts.minRuns ?? 1;
  const maxRuns = opts.maxRuns ?? 5;
  const a = [];
  const b = [];
  const once = async (run, into) => {
    const t0 = now();
    await run();
    into.push(now() - t0);
  };
  while (a.length < maxRuns) {
    if (a.length >= minRuns && now() >= opts.deadline) break;
    const t0 = now();
    if (a.length % 2 === 0) {
      await once(runA, a);
      await once(runB, b);
    } else {
      await once(runB, b);
      await once(runA, a);
    }
    // A pair that alone takes longer than the time left will not fit another: stop early.
    if (a.length >= minRuns && now() + (now() - t0) > opts.deadline) break;
  }
  return { a, b };
}

/**
 * The per-backend deadline: an equal share of what is left of the total budget among the
 * backends still to probe, so a slow first backend cannot starve the others.
 * @param {number} start when probing began
 * @param {number} budgetMs total budget
 * @param {number} remaining backends still to probe (including this one)
 * @param {number} t now
 */
export function shareDeadline(start, budgetMs, remaining, t) {
  const left = Math.max(0, start + budgetMs - t);
  return t + left / Math.max(1, remaining);
}

/**
 * A remembered-choice store over a localStorage-like object; never throws (private mode,
 * quota, workers without localStorage all mean "nothing remembered").
 */
export class ChoiceStore {
  /** @param {{getItem(k: string): string | null, setItem(k: string, v: string): void} | null} storage */
  constructor(storage) {
    this.storage = storage;
  }

  /** @param {string} key @returns {Candidate | null} */
  get(key) {
    try {
      const raw = this.storage && this.storage.getItem(key);
      if (!raw) return null;
      const c = JSON.parse(raw);
      return c && c.engine && c.backend && c.variant ? c : null;
    } catch {
      return null;
    }
  }

  /** @param {string} key @param {Candidate & object} value */
  set(key, value) {
    try {
      if (this.storage) this.storage.setItem(key, JSON.stringify(value));
    } catch {
      /* quota or no storage: the next visit measures again */
    }
  }

  /** @param {string} key */
  forget(key) {
    try {
      if (this.storage) this.storage.removeItem(key);
    } catch {
      /* ignore */
    }
  }
}

/**
 * LiteRT.js variants, fastest expected first: full-integer int8 runs int8 kernels (3.8x float32
 * on the reference CNN here), float16 weights compute like float32 in half the bytes.
 */
export const LITERT_PREFERENCE = Object.freeze(['tflite-int8', 'tflite-float16', 'tflite-float32']);

/**
 * The download gate (not a switch rule: switching follows measured speed, see upgrade.js): an
 * engine whose runtime is not loaded yet — LiteRT.js's 9.4 MB wasm (2.9 MB gzipped) — is fetched
 * and measured only when the current path needs at least this long a prediction. Below it there
 * is nothing a user can feel to win (digits answers in 1-2 ms on TF.js), so the download is
 * skipped. `litertMinMs` changes it. (10 ms: at that time a 2-4x faster engine saves 5-7 ms a
 * call, which pays an idle-time download within a session of a few hundred predictions.)
 */
export const DEFAULT_LITERT_MIN_MS = 10;

/**
 * LiteRT.js variants to try, in order: offered by the manifest, allowed by the user's `variants`
 * option, in LITERT_PREFERENCE order (unknown tflite names last, in manifest order).
 * @param {{name: string, engine?: string, offered?: boolean}[]} variants manifest order
 * @param {string[]} [allowed]
 * @returns {string[]}
 */
export function litertOrder(variants, allowed) {
  const names = variantOrder(variants, 'litert', undefined, allowed);
  const rankOf = (n) => {
    const i = LITERT_PREFERENCE.indexOf(n);
    return i < 0 ? LITERT_PREFERENCE.length : i;
  };
  return names.map((n, i) => [n, i]).sort((a, b) => rankOf(a[0]) - rankOf(b[0]) || a[1] - b[1]).map(([n]) => n);
}

/**
 * Whether to fetch LiteRT.js after the first TF.js prediction, and why (the reason goes to
 * `stats().upgrade` so a page can see why it stayed on TF.js).
 *
 * `mode`: "auto" (default) applies every rule below; "force" skips the device and size rules and
 * switches to LiteRT.js whenever it works (timings are still reported); "off" never loads it.
 * In auto mode LiteRT.js needs a crossOriginIsolated context with threads and relaxed SIMD
 * (LiteRT.js runs threads only with relaxed SIMD; its single-threaded build would race TF.js's
 * own SIMD wasm for no gain), a manifest that offers a litert variant, no remembered verdict for
 * this device and model version, and a current time of at least `minMs` (DEFAULT_LITERT_MIN_MS).
 * @param {{mode?: 'auto' | 'force' | 'off', features: ReturnType<import('./device.js').wasmFeatures>,
 *   variants: string[], tfjsMs: number, minMs?: number, remembered?: {litert?: string} | null}} input
 * @returns {{go: boolean, reason: string}}
 */
export function litertPlan(input) {
  const { mode = 'auto', features, variants, tfjsMs, minMs = DEFAULT_LITERT_MIN_MS, remembered } = input;
  const no = (reason) => ({ go: false, reason });
  if (mode === 'off') return no('LiteRT.js switched off (litert: "off")');
  if (!variants.length) return no('the manifest offers no LiteRT.js variant (or none is allowed)');
  if (!features.wasm) return no('no WebAssembly');
  if (mode === 'force') return { go: true, reason: 'forced (litert: "force")' };
  if (remembered && remembered.litert) return no(`remembered for this device and version: LiteRT.js ${remembered.litert}`);
  if (!features.crossOriginIsolated) return no('page is not crossOriginIsolated (no wasm threads)');
  if (!features.threads) return no('no SharedArrayBuffer (no wasm threads)');
  if (!features.relaxedSimd) return no(features.simd ? 'no relaxed SIMD (LiteRT.js threads need it)' : 'no wasm SIMD');
  if (!(tfjsMs >= minMs)) return no(`TF.js already answers in ${round1(tfjsMs)} ms (< ${minMs} ms): not worth a 9.4 MB download`);
  return { go: true, reason: `TF.js takes ${round1(tfjsMs)} ms (>= ${minMs} ms) and the device has threads + relaxed SIMD` };
}

/**
 * Given medians, whether to switch engines: strictly faster, or forced.
 * @param {number} candidateMs @param {number} currentMs @param {boolean} [force]
 */
export function shouldSwitch(candidateMs, currentMs, force = false) {
  if (!Number.isFinite(candidateMs)) return false;
  return force || !Number.isFinite(currentMs) || candidateMs < currentMs;
}

function round1(x) {
  return Math.round(x * 10) / 10;
}
