// Cache keys, hashing, integrity checks and the corrupt-entry eviction, with an in-memory Cache API.
import test from 'node:test';
import assert from 'node:assert/strict';
import { BlobCache, blobKey, manifestKey, sha256Hex } from '../src/cache.js';
import { buildArtifacts, loadVariantFiles, resolveFile } from '../src/loader.js';
import { IntegrityError } from '../src/errors.js';

/** A minimal CacheStorage over a Map: match/put/delete by URL string. */
function memoryCaches() {
  const store = new Map();
  const cache = {
    match: async (k) => (store.has(String(k)) ? new Response(store.get(String(k)).slice(0)) : undefined),
    put: async (k, r) => { store.set(String(k), await r.arrayBuffer()); },
    delete: async (k) => store.delete(String(k)),
  };
  return { store, caches: { open: async () => cache } };
}

const enc = (s) => new TextEncoder().encode(s).buffer;

test('cache keys are content addresses, independent of the server', () => {
  const sha = 'a'.repeat(64);
  assert.equal(blobKey(sha), `https://browserml.invalid/sha256/${sha}`);
  assert.throws(() => blobKey('../etc/passwd'), TypeError);
  assert.notEqual(manifestKey('http://a/', 'digits', 'stable'), manifestKey('http://b/', 'digits', 'stable'));
  assert.notEqual(manifestKey('http://a/', 'digits', 'stable'), manifestKey('http://a/', 'digits', 'canary'));
});

test('sha256Hex matches a known digest', async () => {
  assert.equal(await sha256Hex(enc('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

async function variantOf(contents) {
  const files = [];
  for (const [path, text] of Object.entries(contents)) {
    const bytes = enc(text);
    files.push({ path, role: path.endsWith('.json') ? 'model' : 'weights', url: `/v1/blobs/${await sha256Hex(bytes)}`, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) });
  }
  return { name: 'uint8', engine: 'tfjs', files };
}

test('network files are verified, cached by sha256, and a reload makes no request', async () => {
  const variant = await variantOf({ 'model.json': '{"modelTopology":{}}', 'group1-shard1of1.bin': 'WEIGHTS' });
  const served = new Map(variant.files.map((f) => [f.url, f.path === 'model.json' ? '{"modelTopology":{}}' : 'WEIGHTS']));
  const requests = [];
  const fetchFn = async (url) => { requests.push(url); return new Response(served.get(new URL(url).pathname)); };
  const { caches } = memoryCaches();
  const cache = new BlobCache({ caches });
  const first = await loadVariantFiles(variant, { server: 'http://x/', fetch: fetchFn, cache });
  assert.equal(first.fromNetwork, 2);
  assert.equal(requests.length, 2);
  const second = await loadVariantFiles(variant, { server: 'http://x/', fetch: fetchFn, cache });
  assert.equal(second.fromCache, 2);
  assert.equal(requests.length, 2, 'the second load is served from the cache');
});

test('a tampered download is refused with IntegrityError and not cached', async () => {
  const variant = await variantOf({ 'model.json': '{}', 'w.bin': 'GOOD' });
  const fetchFn = async (url) => new Response(url.endsWith(variant.files[1].sha256) ? 'BAD!' : '{}');
  const { store, caches } = memoryCaches();
  await assert.rejects(
    loadVariantFiles(variant, { server: 'http://x/', fetch: fetchFn, cache: new BlobCache({ caches }) }),
    (err) => err instanceof IntegrityError && /w\.bin/.test(err.message));
  assert.ok(![...store.keys()].some((k) => k.endsWith(variant.files[1].sha256)));
});

test('a corrupt cache entry is evicted and refetched', async () => {
  const variant = await variantOf({ 'model.json': '{}' });
  const { store, caches } = memoryCaches();
  store.set(blobKey(variant.files[0].sha256), enc('{x'));
  let fetched = 0;
  const fetchFn = async () => { fetched += 1; return new Response('{}'); };
  const got = await loadVariantFiles(variant, { server: 'http://x/', fetch: fetchFn, cache: new BlobCache({ caches }) });
  assert.equal(fetched, 1);
  assert.deepEqual(got.evicted, ['model.json']);
  assert.equal(new TextDecoder().decode(store.get(blobKey(variant.files[0].sha256))), '{}');
});

test('no Cache API: loads still work, only uncached', async () => {
  const variant = await variantOf({ 'model.json': '{}' });
  const got = await loadVariantFiles(variant, { server: 'http://x/', fetch: async () => new Response('{}'), cache: new BlobCache({ caches: null }) });
  assert.equal(got.fromNetwork, 1);
});

test('weight paths from model.json map to manifest files, shards concatenated in order', () => {
  const files = new Map([
    ['model.json', enc(JSON.stringify({ modelTopology: { a: 1 }, format: 'layers-model',
      weightsManifest: [{ paths: ['g1-shard1of2.bin', 'g1-shard2of2.bin'], weights: [{ name: 'w', shape: [2], dtype: 'float32' }] }] }))],
    ['g1-shard2of2.bin', new Uint8Array([3, 4]).buffer],
    ['uint8/g1-shard1of2.bin', new Uint8Array([1, 2]).buffer],
  ]);
  assert.ok(resolveFile(files, 'g1-shard1of2.bin'), 'build-relative path accepted');
  const variant = { name: 'uint8', files: [{ path: 'model.json', role: 'model' }] };
  const art = buildArtifacts(variant, files);
  assert.deepEqual([...new Uint8Array(art.weightData)], [1, 2, 3, 4]);
  assert.equal(art.weightSpecs[0].name, 'w');
  files.delete('g1-shard2of2.bin');
  assert.throws(() => buildArtifacts(variant, files), /g1-shard2of2\.bin/);
});
