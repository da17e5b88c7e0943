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
