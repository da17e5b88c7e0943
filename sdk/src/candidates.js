/**
 * The candidates: every (engine, backend, variant) this manifest, this browser and the user's
 * options allow, each with what the policies need to order them without running anything — is it
 * a GPU backend, is that GPU a software one, how many bytes must come down, what does it cost to
 * start (runtime download + compile, model download, shader compile).
 *
 * Engines and their backends:
 * - tfjs: webgpu (an adapter is granted), webgl (a context can be created), wasm, cpu;
 * - litert: wasm (XNNPACK), webgpu (its ML Drift accelerator; an adapter is granted).
 * A manifest with only TFLite variants simply yields only litert candidates; one with only TF.js
 * variants only tfjs candidates. Pure logic (no DOM, no engine): node --test covers it.
 * @module candidates
 */

import { LITERT_PREFERENCE } from './selection.js';

/** @typedef {import('./selection.js').Candidate} Candidate */
/**
 * @typedef {Candidate & {gpu: boolean, software: boolean, bytes: number, index: number}} RichCandidate
 *   index: position of the variant in the engine's preference order (0 = preferred)
 */

/** GPU backends: their first prediction compiles shaders. */
export const GPU_BACKENDS = Object.freeze(['webgpu', 'webgl']);

/**
 * Start-up cost model, in ms, calibrated on measured cold starts (GPU machine, Chromium 156,
 * 2026-11-30; `load` breakdown of the SDK's own stats): what an engine's runtime costs to bring up
 * (download at TRANSFER_BYTES_PER_MS of its compressed bytes + parse / compile: TF.js's 1.47 MB
 * tf.min.js is JavaScript to parse, 400-465 ms with its wasm backend; LiteRT.js's 9.4 MB wasm
 * streams through the baseline compiler and was up in 250-350 ms), and what a model costs per MB
 * of its variant to build and to run its first prediction on each engine (TF.js dequantizes to
 * float32 tensors and packs weights at the first run: 616 + 935 ms for the 25 MB uint8 CNN;
 * LiteRT.js maps the flatbuffer: 268 + 49 ms for the 25 MB int8 CNN).
 */
export const RUNTIME_MS = Object.freeze({
  tfjs: { core: 350, wasm: 60, webgpu: 60, webgl: 0, cpu: 0 },
  litert: { core: 250, wasm: 0, webgpu: 0 },
});
/** Compressed bytes of each runtime (what crosses the network on a cold visit). */
export const RUNTIME_BYTES = Object.freeze({
  tfjs: { core: 420000, wasm: 260000, webgpu: 90000, webgl: 0, cpu: 0 },
  litert: { core: 2900000, wasm: 0, webgpu: 0 },
});
/** Build + first-run ms per MB of variant bytes, per engine. */
export const MS_PER_MB = Object.freeze({ tfjs: 60, litert: 12 });

/**
 * What a first prediction costs beyond that, in ms, before anything was measured on this device:
 * shader compilation on a GPU (the write-up's 500-800 ms on WebGL; 0.3-1.1 s for WebGPU on an
 * H200, 1.5-6.4 s for WebGL there on a fresh driver cache), TF.js's cpu backend's slow kernels.
 */
export const COMPILE_MS = Object.freeze({
  'tfjs/webgl': 1500, 'tfjs/webgpu': 900, 'tfjs/wasm': 0, 'tfjs/cpu': 600,
  'litert/wasm': 0, 'litert/webgpu': 900,
});

/** A software GPU is started only when nothing else can run. */
export const SOFTWARE_PENALTY_MS = 60000;

/** Nominal network: 10 MB/s. */
export const TRANSFER_BYTES_PER_MS = 10000;

/**
 * Backends each engine can start here, from cheap facts (gpu.js, device.wasmFeatures).
 * @param {import('./gpu.js').GpuFacts} gpu
 * @param {{wasm: boolean}} features
 * @returns {{tfjs: string[], litert: string[]}}
 */
export function engineBackends(gpu, features) {
  const webgpu = Boolean(gpu && gpu.webgpu);
  const webgl = Boolean(gpu && gpu.webgl);
  return {
    tfjs: [...(webgpu ? ['webgpu'] : []), ...(webgl ? ['webgl'] : []), ...(features.wasm ? ['wasm'] : []), 'cpu'],
    litert: features.wasm ? ['wasm', ...(webgpu ? ['webgpu'] : [])] : [],
  };
}

/**
 * Whether a backend runs on a software GPU according to the facts.
 * @param {string} backend @param {import('./gpu.js').GpuFacts} gpu
 */
export function isSoftwareBackend(backend, gpu) {
  if (backend === 'webgpu') return Boolean(gpu && gpu.webgpu && gpu.webgpu.software);
  if (backend === 'webgl') return Boolean(gpu && gpu.webgl && gpu.webgl.software);
  return false;
}

/** @param {{bytes?: number, files?: {bytes?: number}[]}} variant */
export function variantBytes(variant) {
  if (Number.isFinite(variant.bytes)) return variant.bytes;
  return (variant.files || []).reduce((s, f) => s + (f.bytes || 0), 0);
}

/**
 * Variant names of one engine in preference order: TF.js in manifest order (smallest download
 * first; they compute alike), LiteRT.js fastest-expected first (int8, float16, float32).
 * @param {{name: string, engine?: string, offered?: boolean}[]} variants
 * @param {string} engine @param {string[]} [allowed]
 */
export function preferredVariants(variants, engine, allowed) {
  const names = variants
    .filter((v) => (v.engine || 'tfjs') === engine && v.offered !== false)
    .filter((v) => !allowed || !allowed.length || allowed.includes(v.name))
    .map((v) => v.name);
  if (engine !== 'litert') return names;
  const rankOf = (n) => {
    const i = LITERT_PREFERENCE.indexOf(n);
    return i < 0 ? LITERT_PREFERENCE.length : i;
  };
  return names.map((n, i) => [n, i]).sort((a, b) => rankOf(a[0]) - rankOf(b[0]) || a[1] - b[1]).map(([n]) => n);
}

/**
 * Every candidate the manifest, the browser and the options allow.
 * @param {{variants: object[]}} manifest
 * @param {{backends: {tfjs: string[], litert: string[]}, gpu: import('./gpu.js').GpuFacts,
 *   allowBackends?: string[], allowVariants?: string[], engines?: string[]}} opts
 *   engines: engines allowed (default both)
 * @returns {RichCandidate[]}
 */
export function listCandidates(manifest, opts) {
  const out = [];
  const engines = opts.engines || ['tfjs', 'litert'];
  for (const engine of engines) {
    const backends = (opts.backends[engine] || []).filter((b) => !opts.allowBackends || !opts.allowBackends.length || opts.allowBackends.includes(b));
    const names = preferredVariants(manifest.variants, engine, opts.allowVariants);
    names.forEach((variant, index) => {
      const v = manifest.variants.find((x) => x.name === variant && (x.engine || 'tfjs') === engine);
      for (const backend of backends) {
        out.push({
          engine, backend, variant, index, bytes: variantBytes(v),
          gpu: GPU_BACKENDS.includes(backend), software: isSoftwareBackend(backend, opts.gpu),
        });
      }
    });
  }
  return out;
}

/**
 * Estimated ms from "decided" to "first answer" on this candidate: runtime bytes not yet loaded,
 * model bytes, compile. A software GPU gets SOFTWARE_PENALTY_MS so it only starts when nothing
 * else can.
 * @param {RichCandidate} c
 * @param {{loaded?: Set<string>, compileMs?: Record<string, number>}} [state]
 *   loaded: "engine" or "engine/backend" runtimes already started; compileMs: measured costs
 */
export function startCost(c, state = {}) {
  const loaded = state.loaded || new Set();
  const ms = RUNTIME_MS[c.engine] || {};
  const bytes = RUNTIME_BYTES[c.engine] || {};
  let cost = c.bytes / TRANSFER_BYTES_PER_MS + (c.bytes / 1e6) * (MS_PER_MB[c.engine] ?? 60);
  if (!loaded.has(c.engine)) cost += (ms.core || 0) + (bytes.core || 0) / TRANSFER_BYTES_PER_MS;
  if (!loaded.has(`${c.engine}/${c.backend}`)) cost += (ms[c.backend] || 0) + (bytes[c.backend] || 0) / TRANSFER_BYTES_PER_MS;
  return cost + compileCost(c, state.compileMs) + (c.software ? SOFTWARE_PENALTY_MS : 0);
}

/**
 * Compile + first-run cost of a candidate: measured on this device when known, else COMPILE_MS.
 * @param {Candidate} c @param {Record<string, number>} [measured] by "engine/backend"
 */
export function compileCost(c, measured) {
  const key = `${c.engine}/${c.backend}`;
  if (measured && Number.isFinite(measured[key])) return measured[key];
  return COMPILE_MS[key] ?? 1000;
}
