/**
 * Content-addressed model-file cache on the Cache API.
 *
 * Keys are the file's sha256 under a fixed synthetic origin
 * (`https://browserml.invalid/sha256/<hex>`), not the URL it came from: the same bytes served by
 * the origin server or a CDN are one entry, and a new model version re-uses every unchanged shard.
 *
 * Decision: a cache hit is **re-verified**, not trusted by key. Hashing costs little next to a
 * download (SubtleCrypto's SHA-256 runs at hundreds of MB/s) and protects against a disk or a
 * script on the same origin that altered the entry; an entry that fails is evicted and the file
 * refetched from the network (the loader does this).
 *
 * The last good manifest per (server, model, channel) is kept in the same cache so a page that
 * loaded once keeps working offline.
 * @module cache
 */

export const CACHE_NAME = 'browserml-v1';
const KEY_ORIGIN = 'https://browserml.invalid';

/**
 * @param {string} sha256 lowercase hex digest
 * @returns {string} the cache key URL for that content
 */
export function blobKey(sha256) {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new TypeError(`not a sha256 hex digest: ${sha256}`);
  return `${KEY_ORIGIN}/sha256/${sha256}`;
}

/**
 * @param {string} server base URL of the model server
 * @param {string} model
 * @param {string} channel
 * @returns {string} the cache key URL for the last good manifest
 */
export function manifestKey(server, model, channel) {
  return `${KEY_ORIGIN}/manifest/${encodeURIComponent(server)}/${encodeURIComponent(model)}/${encodeURIComponent(channel)}`;
}

/**
 * Hex sha256 of some bytes, with SubtleCrypto (pages on https or localhost, workers, Node >= 19).
 * @param {ArrayBuffer | ArrayBufferView} bytes
 * @returns {Promise<string>}
 */
export async function sha256Hex(bytes) {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes);
  const out = new Array(digest.byteLength);
  const view = new Uint8Array(digest);
  for (let i = 0; i < view.length; i += 1) out[i] = view[i].toString(16).padStart(2, '0');
  return out.join('');
}

/**
 * The blob cache. Every method degrades to a no-op when the Cache API is missing (an http page
 * that is not localhost, some private modes), so the SDK still works, only without caching.
 */
export class BlobCache {
  /** @param {{name?: string, caches?: CacheStorage | null}} [opts] */
  constructor(opts = {}) {
    this.name = opts.name || CACHE_NAME;
    this.storage = opts.caches !== undefined ? opts.caches : (globalThis.caches || null);
    /** @type {Promise<Cache | null> | null} */
    this._open = null;
  }

  /** @returns {Promise<Cache | null>} */
  open() {
    if (!this.storage) return Promise.resolve(null);
    if (!this._open) this._open = this.storage.open(this.name).catch(() => null);
    return this._open;
  }

  /**
   * @param {string} sha256
   * @returns {Promise<ArrayBuffer | null>} the cached bytes, unverified (the loader verifies)
   */
  async get(sha256) {
    const cache = await this.open();
    if (!cache) return null;
    const hit = await cache.match(blobKey(sha256));
    return hit ? hit.arrayBuffer() : null;
  }

  /**
   * Store bytes that were already verified against `sha256`. Failures (quota) are swallowed:
   * a full disk must not fail a load, it only costs the next visit a download.
   * @param {string} sha256
   * @param {ArrayBuffer} bytes
   * @returns {Promise<boolean>} whether it was stored
   */
  async put(sha256, bytes) {
    const cache = await this.open();
    if (!cache) return false;
    try {
      await cache.put(blobKey(sha256), new Response(bytes, {
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.byteLength) },
      }));
      return true;
    } catch {
      return false;
    }
  }

  /** @param {string} sha256 @returns {Promise<boolean>} */
  async evict(sha256) {
    const cache = await this.open();
    return cache ? cache.delete(blobKey(sha256)) : false;
  }

  /** @param {string} key from manifestKey @param {object} manifest */
  async putManifest(key, manifest) {
    const cache = await this.open();
    if (!cache) return;
    try {
      await cache.put(key, new Response(JSON.stringify(manifest), { headers: { 'Content-Type': 'application/json' } }));
    } catch {
      /* quota: offline copy is best effort */
    }
  }

  /** @param {string} key from manifestKey @returns {Promise<object | null>} */
  async getManifest(key) {
    const cache = await this.open();
    if (!cache) return null;
    const hit = await cache.match(key);
    return hit ? hit.json() : null;
  }
}
