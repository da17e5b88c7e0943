/**
 * Manifest and model files: fetch, verify, cache, and assemble into model artifacts.
 *
 * The loader reads only the manifest and blobs (docs/http-api.md), so any static host or CDN that
 * serves the same files works. Every file fetched over the network is checked against its sha256
 * (SubtleCrypto) and size before it is used or cached; cache hits are re-verified too (see cache.js)
 * and a bad entry is evicted and refetched. Nothing here knows about TF.js: `buildArtifacts` returns
 * the plain {modelTopology, weightSpecs, weightData} object that an engine turns into a model.
 * @module loader
 */

import { IntegrityError, LoadError } from './errors.js';
import { manifestKey, sha256Hex } from './cache.js';
import { pickManifest } from './canary.js';
import { readBody } from './progress.js';

/**
 * @typedef {{path: string, role: string, url: string, bytes: number, sha256: string}} ManifestFile
 * @typedef {{name: string, engine: string, format: string, weight_dtype?: string, bytes?: number,
 *   files: ManifestFile[], offered?: boolean}} ManifestVariant
 * @typedef {{name: string, version: number, channel: string, labels: string[],
 *   input: {height: number, width: number, channels: number, value_range?: number[]},
 *   variants: ManifestVariant[]}} Manifest
 */

/**
 * Fetch the manifest; when the network fails (offline) or the server answers 5xx (e.g. its disk is
 * full), fall back to the last good copy in the cache, so a page that loaded once keeps working.
 * The answer then says why (`reason`), and the runtime reports it as a `fallback` event.
 * @param {{server: string, model: string, channel?: string, clientId?: string,
 *   fetch?: typeof fetch, cache?: import('./cache.js').BlobCache}} opts
 * @returns {Promise<{manifest: Manifest, source: 'network' | 'offline-cache' | 'stale-cache', ms: number,
 *   reason?: string}>}
 */
export async function fetchManifest(opts) {
  const { server, model, channel = 'stable', clientId, cache } = opts;
  const doFetch = opts.fetch || globalThis.fetch.bind(globalThis);
  const url = manifestUrl(server, model, channel);
  const key = manifestKey(server, model, channel);
  const t0 = now();
  const cached = async (source, reason) => {
    const copy = cache ? await cache.getManifest(key) : null;
    return copy ? { manifest: copy, source, ms: now() - t0, reason } : null;
  };
  let response;
  try {
    response = await doFetch(url, { credentials: 'omit' });
  } catch (err) {
    const reason = `cannot reach ${url}: ${err && err.message ? err.message : err}`;
    const offline = await cached('offline-cache', reason);
    if (offline) return offline;
    throw new LoadError(reason, 'network');
  }
  if (!response.ok) {
    let detail = '';
    try {
      detail = (await response.json()).error || '';
    } catch {
      /* not JSON */
    }
    const reason = `manifest ${url}: HTTP ${response.status}${detail ? ` (${detail})` : ''}`;
    if (response.status >= 500) {
      const stale = await cached('stale-cache', reason);
      if (stale) return stale;
    }
    throw new LoadError(reason, response.status === 404 ? 'not-found' : 'http');
  }
  const manifest = validateManifest(await pickManifest(await response.json(), clientId));
  if (cache) await cache.putManifest(key, manifest);
  return { manifest, source: 'network', ms: now() - t0 };
}

/**
 * The channel document's URL: one path, no query, so `browserml serve` and a static tree from
 * `browserml export` (any CDN or object store) answer it alike; the canary split is applied here
 * (canary.js). `server` may carry a path prefix (`https://cdn.example/models/`).
 * @param {string} server @param {string} model @param {string} channel
 * @returns {string} absolute manifest URL
 */
export function manifestUrl(server, model, channel) {
  const base = server.endsWith('/') ? server : `${server}/`;
  return new URL(`v1/models/${encodeURIComponent(model)}/channels/${encodeURIComponent(channel)}.json`, base).href;
}

/**
 * Check the fields the SDK relies on, so a bad manifest fails with a message instead of a
 * TypeError deep in an engine. A variant with a bad file entry (no files, a malformed sha256) is
 * dropped and listed in `rejected`; the manifest fails only when no variant is left.
 * @param {any} m
 * @returns {Manifest & {rejected?: {name: string, reason: string}[]}}
 */
export function validateManifest(m) {
  const bad = (what) => { throw new LoadError(`manifest is invalid: ${what}`, 'manifest'); };
  if (!m || typeof m !== 'object') bad('not an object');
  if (!Array.isArray(m.labels) || !m.labels.length) bad('no labels');
  const inp = m.input || {};
  if (!(inp.height > 0 && inp.width > 0)) bad('input.height/width missing');
  if (![1, 3].includes(inp.channels ?? 3)) bad(`input.channels must be 1 or 3, got ${inp.channels}`);
  if (!Array.isArray(m.variants) || !m.variants.length) bad('no variants');
  const rejected = [];
  const variants = m.variants.filter((v) => {
    const reason = variantProblem(v);
    if (reason) rejected.push({ name: v && v.name ? String(v.name) : '?', reason });
    return !reason;
  });
  if (!variants.length) bad(rejected.map((r) => r.reason).join('; '));
  return rejected.length ? { ...m, variants, rejected } : m;
}

/** @param {any} v @returns {string | null} why a manifest variant cannot be used, or null */
function variantProblem(v) {
  if (!v || !v.name || !Array.isArray(v.files) || !v.files.length) return `variant ${v && v.name} has no files`;
  for (const f of v.files) {
    if (!f || !/^[0-9a-f]{64}$/.test(f.sha256 || '')) return `${v.name}/${f && f.path}: sha256 missing or malformed`;
  }
  return null;
}

/**
 * Fetch (or read from cache) every file of a variant, verified. With `opts.progress` (a
 * progress.LoadProgress) network bodies are read with a stream reader and every file reports its
 * bytes, source and integrity check as it goes.
 * @param {ManifestVariant} variant
 * @param {{server: string, fetch?: typeof fetch, cache?: import('./cache.js').BlobCache | null,
 *   progress?: import('./progress.js').LoadProgress | null}} opts
 * @returns {Promise<{files: Map<string, ArrayBuffer>, fromCache: number, fromNetwork: number,
 *   bytesFetched: number, evicted: string[], ms: number}>}
 */
export async function loadVariantFiles(variant, opts) {
  const doFetch = opts.fetch || globalThis.fetch.bind(globalThis);
  const cache = opts.cache || null;
  const t0 = now();
  const report = { files: new Map(), fromCache: 0, fromNetwork: 0, bytesFetched: 0, evicted: [], ms: 0 };
  const progress = opts.progress && opts.progress.active ? opts.progress : null;
  if (progress) progress.expect(variant.name, variant.files);
  await Promise.all(variant.files.map(async (file) => {
    if (cache) {
      const hit = await cache.get(file.sha256);
      if (hit) {
        if (hit.byteLength === file.bytes && (await sha256Hex(hit)) === file.sha256) {
          report.files.set(file.path, hit);
          report.fromCache += 1;
          if (progress) {
            progress.bytes(variant.name, file, hit.byteLength, 'cache');
            progress.verified(variant.name, file, 'cache');
          }
          return;
        }
        // A corrupt entry: drop it and fall through to the network.
        await cache.evict(file.sha256);
        report.evicted.push(file.path);
      }
    }
    const url = blobUrl(opts.server, file);
    let response;
    try {
      response = await doFetch(url, { credentials: 'omit' });
    } catch (err) {
      throw new LoadError(`${variant.name}/${file.path}: cannot fetch ${url}: ${err && err.message ? err.message : err}`, 'network');
    }
    if (!response.ok) {
      throw new LoadError(`${variant.name}/${file.path}: HTTP ${response.status} from ${url}`, 'http');
    }
    const bytes = progress
      ? await readBody(response, file.bytes, (n) => progress.bytes(variant.name, file, n, 'network'))
      : await response.arrayBuffer();
    await verify(variant.name, file, bytes);
    if (progress) progress.verified(variant.name, file, 'network');
    report.files.set(file.path, bytes);
    report.fromNetwork += 1;
    report.bytesFetched += bytes.byteLength;
    if (cache) await cache.put(file.sha256, bytes);
  }));
  report.ms = now() - t0;
  return report;
}

/**
 * A file's absolute URL: the manifest's `url` (`/v1/blobs/<sha256>`) under the server's base, so a
 * base with a path prefix (a CDN folder) keeps it; an absolute `url` is used as it is.
 * @param {string} server @param {ManifestFile} file
 * @returns {string}
 */
export function blobUrl(server, file) {
  const path = file.url || `/v1/blobs/${file.sha256}`;
  if (/^[a-z][a-z0-9+.-]*:/i.test(path)) return path;
  const base = server.endsWith('/') ? server : `${server}/`;
  return new URL(path.replace(/^\/+/, ''), base).href;
}

/**
 * Throw IntegrityError unless `bytes` has the promised size and sha256.
 * @param {string} variantName @param {ManifestFile} file @param {ArrayBuffer} bytes
 */
export async function verify(variantName, file, bytes) {
  if (typeof file.bytes === 'number' && bytes.byteLength !== file.bytes) {
    throw new IntegrityError(
      `${variantName}/${file.path}: got ${bytes.byteLength} bytes, the manifest says ${file.bytes}`,
      { variant: variantName, path: file.path });
  }
  const digest = await sha256Hex(bytes);
  if (digest !== file.sha256) {
    throw new IntegrityError(
      `${variantName}/${file.path}: sha256 ${digest.slice(0, 12)}… does not match the manifest (${file.sha256.slice(0, 12)}…)`,
      { variant: variantName, path: file.path });
  }
}

/**
 * Find the bytes for a path named inside model.json. Manifest paths are relative to the variant
 * folder ("group1-shard1of1.bin"); a build-relative path ("uint8/group1-shard1of1.bin") is accepted
 * too so a manifest written either way works.
 * @param {Map<string, ArrayBuffer>} files
 * @param {string} path
 * @returns {ArrayBuffer | undefined}
 */
export function resolveFile(files, path) {
  if (files.has(path)) return files.get(path);
  const clean = path.replace(/^\.\//, '');
  for (const [key, value] of files) {
    if (key === clean || key.endsWith(`/${clean}`)) return value;
  }
  return undefined;
}

/**
 * Assemble TF.js model artifacts from verified files: parse model.json, concatenate the weight
 * shards in `weightsManifest` order (exactly what tf.io.fromMemory / loadLayersModel expect).
 * @param {ManifestVariant} variant
 * @param {Map<string, ArrayBuffer>} files
 * @returns {{modelTopology: object, weightSpecs: object[], weightData: ArrayBuffer, format?: string,
 *   generatedBy?: string, convertedBy?: string | null, trainingConfig?: object}}
 */
export function buildArtifacts(variant, files) {
  if (variant.format === 'tflite' || variant.engine === 'litert') return buildTfliteArtifacts(variant, files);
  const modelFile = variant.files.find((f) => f.role === 'model') ||
    variant.files.find((f) => /(^|\/)model\.json$/.test(f.path));
  if (!modelFile) throw new LoadError(`${variant.name}: no model.json in the manifest`, 'manifest');
  let json;
  try {
    json = JSON.parse(new TextDecoder().decode(files.get(modelFile.path)));
  } catch (err) {
    throw new LoadError(`${variant.name}/${modelFile.path}: not valid JSON (${err.message})`, 'format');
  }
  if (!json.modelTopology) throw new LoadError(`${variant.name}/${modelFile.path}: no modelTopology`, 'format');
  const weightSpecs = [];
  const shards = [];
  for (const group of json.weightsManifest || []) {
    (group.paths || []).forEach((p, i) => {
      const bytes = resolveFile(files, p);
      if (!bytes) {
        throw new LoadError(`${variant.name}: model.json names weight file ${p}, which the manifest does not list`, 'format');
      }
      vouch(variant, group, p, i);
      shards.push(bytes);
    });
    weightSpecs.push(...(group.weights || []));
  }
  return {
    modelTopology: json.modelTopology,
    weightSpecs,
    weightData: concat(shards),
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    trainingConfig: json.trainingConfig,
  };
}

/**
 * model.json is content-addressed (its own sha256 is checked), and our converter records each
 * shard's sha256 in its weightsManifest group (`sha256`, parallel to `paths`). The shard bytes
 * were checked against the *manifest's* sha256; this checks that the manifest names the very
 * shard model.json was written with, so a manifest entry pointing at some other valid file
 * cannot make a variant load with the wrong weights. Groups without `sha256` (models converted
 * elsewhere or before) are accepted as they are.
 * @param {ManifestVariant} variant @param {any} group @param {string} path @param {number} index
 */
export function vouch(variant, group, path, index) {
  if (!Array.isArray(group.sha256)) return;
  const clean = path.replace(/^\.\//, '');
  const entry = variant.files.find((f) => f.path === path || f.path === clean || f.path.endsWith(`/${clean}`));
  const expected = group.sha256[index];
  if (!entry || entry.sha256 !== expected) {
    throw new IntegrityError(
      `${variant.name}/${path}: model.json vouches for sha256 ${String(expected).slice(0, 12)}…, the manifest names ${entry ? entry.sha256.slice(0, 12) : 'nothing'}…`,
      { variant: variant.name, path });
  }
}

/**
 * Artifacts of a TFLite variant: its one verified `.tflite` file, checked to be a TFLite
 * flatbuffer (file identifier "TFL3" at byte 4) before any engine sees it.
 * @param {ManifestVariant} variant
 * @param {Map<string, ArrayBuffer>} files
 * @returns {{format: 'tflite', model: Uint8Array}}
 */
export function buildTfliteArtifacts(variant, files) {
  const file = variant.files.find((f) => f.role === 'model') || variant.files.find((f) => /\.tflite$/.test(f.path));
  const bytes = file && resolveFile(files, file.path);
  if (!bytes) throw new LoadError(`${variant.name}: no .tflite file in the manifest`, 'manifest');
  const model = new Uint8Array(bytes);
  if (!isTflite(model)) throw new LoadError(`${variant.name}/${file.path}: not a TFLite flatbuffer`, 'format');
  return { format: 'tflite', model };
}

/** @param {Uint8Array} b @returns {boolean} whether b carries the TFLite file identifier */
export function isTflite(b) {
  return b.length > 8 && b[4] === 0x54 && b[5] === 0x46 && b[6] === 0x4c && b[7] === 0x33;
}

/**
 * @param {ArrayBuffer[]} buffers
 * @returns {ArrayBuffer}
 */
export function concat(buffers) {
  if (buffers.length === 1) return buffers[0];
  const total = buffers.reduce((n, b) => n + b.byteLength, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const b of buffers) {
    out.set(new Uint8Array(b), offset);
    offset += b.byteLength;
  }
  return out.buffer;
}

function now() {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}
