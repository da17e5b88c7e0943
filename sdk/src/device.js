/**
 * Coarse device description. Telemetry gets a *class* (never the user agent string or anything
 * finer than buckets), and the backend choice is remembered per device key so that a profile
 * copied to other hardware, or a browser upgrade, measures again.
 * @module device
 */

/** @returns {any} the global object in a page or a worker */
function scope() {
  return typeof globalThis !== 'undefined' ? globalThis : self;
}

/**
 * A coarse class such as "desktop-2c-8g-coi": form factor, cores and memory in buckets, and
 * whether the page is crossOriginIsolated (what wasm threads need).
 * @param {any} [nav] navigator-like object (defaults to the real one; injectable for tests)
 * @param {boolean} [isolated]
 * @returns {string}
 */
export function deviceClass(nav = scope().navigator, isolated = scope().crossOriginIsolated) {
  const n = nav || {};
  const mobile = (n.userAgentData && n.userAgentData.mobile) || /Mobi|Android/i.test(n.userAgent || '');
  const cores = bucket(n.hardwareConcurrency || 1, [1, 2, 4, 8, 16]);
  const mem = n.deviceMemory ? `-${bucket(n.deviceMemory, [1, 2, 4, 8])}g` : '';
  return `${mobile ? 'mobile' : 'desktop'}-${cores}c${mem}${isolated ? '-coi' : ''}`;
}

/**
 * Key under which a measured choice is remembered: the device class plus the browser's major
 * version (a new browser may have faster kernels or a different GPU stack).
 * @param {any} [nav]
 * @param {boolean} [isolated]
 */
export function deviceKey(nav = scope().navigator, isolated = scope().crossOriginIsolated) {
  const n = nav || {};
  const m = /(Chrome|Firefox|Version)\/(\d+)/.exec(n.userAgent || '');
  return `${deviceClass(n, isolated)}-${m ? m[1].toLowerCase() + m[2] : 'unknown'}`;
}

/**
 * Largest bucket boundary not above the value.
 * @param {number} value
 * @param {number[]} bounds ascending
 */
export function bucket(value, bounds) {
  let out = bounds[0];
  for (const b of bounds) if (value >= b) out = b;
  return out;
}

// The smallest modules that validate only with SIMD / relaxed SIMD (as wasm-feature-detect).
const SIMD_PROBE = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11];
const RELAXED_SIMD_PROBE = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11];

/**
 * What a wasm engine can use here: WebAssembly itself, SIMD, relaxed SIMD, and threads
 * (SharedArrayBuffer, which browsers hand out only to crossOriginIsolated pages and workers).
 * Synchronous and cheap (two tiny WebAssembly.validate calls); nothing is downloaded.
 * @param {any} [g] global scope (injectable for tests)
 * @returns {{wasm: boolean, simd: boolean, relaxedSimd: boolean, threads: boolean, crossOriginIsolated: boolean, cores: number}}
 */
export function wasmFeatures(g = scope()) {
  const W = g.WebAssembly;
  const validate = (bytes) => {
    try {
      return Boolean(W && W.validate(new Uint8Array(bytes)));
    } catch {
      return false;
    }
  };
  const isolated = g.crossOriginIsolated === true;
  return {
    wasm: typeof W === 'object' && W !== null,
    simd: validate(SIMD_PROBE),
    relaxedSimd: validate(RELAXED_SIMD_PROBE),
    threads: isolated && typeof g.SharedArrayBuffer === 'function',
    crossOriginIsolated: isolated,
    cores: (g.navigator && g.navigator.hardwareConcurrency) || 1,
  };
}
