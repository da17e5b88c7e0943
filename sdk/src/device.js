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
 * What a wasm engine can use here: WebAssembly itself, SIMD, relaxed SIMD, threads
 * (SharedArrayBuffer, which browsers hand out only to crossOriginIsolated pages and workers) and
 * how relaxed SIMD's int8 dot product behaves (see int8DotProduct).
 * Synchronous and cheap (tiny modules, one instantiated); nothing is downloaded.
 * @param {any} [g] global scope (injectable for tests)
 * @returns {{wasm: boolean, simd: boolean, relaxedSimd: boolean, int8Dot: string | null, threads: boolean, crossOriginIsolated: boolean, cores: number}}
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
    int8Dot: int8DotProduct(g),
    threads: isolated && typeof g.SharedArrayBuffer === 'function',
    crossOriginIsolated: isolated,
    cores: (g.navigator && g.navigator.hardwareConcurrency) || 1,
  };
}

/**
 * Which relaxed-SIMD int8 dot product this browser and CPU give, found by running the same two
 * checks XNNPACK (LiteRT.js's CPU kernels) runs at start-up to choose its int8 kernels:
 * - 'usdot': unsigned x signed without saturation (x86 with AVX-VNNI): XNNPACK's dot-product
 *   int8 kernels, full-int8 models several times faster than float32;
 * - 'sdot': signed x signed (Arm dot product): likewise;
 * - 'none': the instruction exists but saturates (x86 without AVX-VNNI, where V8 builds it from
 *   pmaddubsw): XNNPACK keeps its 16-bit multiply int8 kernels and int8 gains little over float32;
 * - null: no relaxed SIMD (or the probe could not run).
 * It changes no choice (the SDK measures); it explains the figures in stats and bench reports.
 * @param {any} [g] global scope (injectable for tests)
 * @returns {'usdot' | 'sdot' | 'none' | null}
 */
export function int8DotProduct(g = scope()) {
  try {
    const W = g.WebAssembly;
    if (!W || !W.validate(new Uint8Array(RELAXED_SIMD_PROBE))) return null;
    const instance = new W.Instance(new W.Module(new Uint8Array(DOT_PROBE)));
    instance.exports.f();
    return dotKind(Array.from(new Int32Array(instance.exports.m.buffer, 0, 8)));
  } catch {
    return null;
  }
}

/**
 * Given the eight i32 lanes the dot probe stores (the "-128 as i7" check, then the overflow
 * check), return the semantics they show (see int8DotProduct).
 * @param {number[]} lanes
 * @returns {'usdot' | 'sdot' | 'none'}
 */
export function dotKind(lanes) {
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const [sign, overflow] = [lanes.slice(0, 4), lanes.slice(4, 8)];
  if (same(sign, [128, 128, 128, 128]) && same(overflow, [-65536, -98048, -98048, -130560])) return 'usdot';
  if (same(sign, [-128, -128, -128, -128]) && same(overflow, [65536, 33024, 33024, 512])) return 'sdot';
  return 'none';
}

/** One i32x4.relaxed_dot_i8x16_i7x16_add_s of (a, b) onto zero, stored at `address`. */
function dotCheck(address, a, b) {
  const v128 = (bytes) => [0xfd, 0x0c, ...bytes.map((x) => x & 0xff)];
  return [0x41, address, ...v128(a), ...v128(b), ...v128(new Array(16).fill(0)),
    0xfd, 0x93, 0x02, /* v128.store */ 0xfd, 0x0b, 0x04, 0x00];
}

/** A module exporting memory "m" and f(), which runs XNNPACK's two dot-product checks. */
const DOT_PROBE = (() => {
  const body = [0x00, ...dotCheck(0, [0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0],
    [0, 0, 0, -128, 0, 0, -128, 0, 0, -128, 0, 0, -128, 0, 0, 0]),
  ...dotCheck(16, new Array(16).fill(-128),
    [-128, -128, -128, -128, -128, -128, -1, -1, -1, -1, -128, -128, -1, -1, -1, -1]), 0x0b];
  const leb = (n) => (n < 128 ? [n] : [(n & 0x7f) | 0x80, n >> 7]);
  const section = (id, bytes) => [id, ...leb(bytes.length), ...bytes];
  return [0, 97, 115, 109, 1, 0, 0, 0,
    ...section(1, [1, 0x60, 0, 0]), ...section(3, [1, 0]), ...section(5, [1, 0, 1]),
    ...section(7, [2, 1, 0x66, 0, 0, 1, 0x6d, 2, 0]), ...section(10, [1, ...leb(body.length), ...body])];
})();
