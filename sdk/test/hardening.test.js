// Issue 17: the SDK's side of the hardening — text cut on code points, batches given up on,
// the last good manifest on 5xx, one bad variant dropped, model.json vouching for its shards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpSink, cutText, toWire } from '../src/sinks/http.js';
import { buildArtifacts, fetchManifest, validateManifest, vouch } from '../src/loader.js';
import { IntegrityError, LoadError } from '../src/errors.js';

const SHA = (c) => c.repeat(64);

test('a long message cut through an emoji stays valid Unicode', () => {
  const message = `${'x'.repeat(499)}😀 and more`;
  assert.equal(message.slice(0, 500).isWellFormed(), false); // what the sink did before
  const reason = toWire({ type: 'error', model: 'digits', message }).reason;
  assert.ok(reason.isWellFormed());
  assert.equal(reason, 'x'.repeat(499));
  assert.equal(cutText('a\ud83db', 10), 'a\ufffdb');
  assert.equal(cutText('\udc00', 10), '\ufffd');
  assert.equal(cutText('😀😀', 3), '😀');
  assert.ok(new TextEncoder().encode(JSON.stringify([toWire({ type: 'error', model: 'm', message: 'a\ud800' })])).length > 0);
});

test('a batch the server rejects as malformed is dropped; 5xx is retried at most maxAttempts times', async () => {
  let status = 400;
  let calls = 0;
  const fetch = async () => { calls += 1; return { ok: status === 200, status }; };
  const sink = new HttpSink({ server: 'http://x', fetch, intervalMs: 60000, maxAttempts: 3, listen: false, clientId: null });
  sink.send({ type: 'init', model: 'digits' });
  await sink.flush();
  assert.deepEqual([calls, sink.stats().queued, sink.stats().dropped], [1, 0, 1]);
  status = 500;
  sink.send({ type: 'init', model: 'digits' });
  for (let i = 0; i < 10; i += 1) await sink.flush();
  assert.deepEqual([calls, sink.stats().queued, sink.stats().dropped], [4, 0, 2]);
  sink.close();
});

test('batches carry a client id, kept across sinks', () => {
  const store = new Map();
  const g = { localStorage: { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) }, crypto: globalThis.crypto };
  const saved = globalThis.localStorage;
  globalThis.localStorage = g.localStorage;
  try {
    const a = new HttpSink({ server: 'http://x', fetch: async () => ({ ok: true }), listen: false });
    const b = new HttpSink({ server: 'http://x', fetch: async () => ({ ok: true }), listen: false });
    const id = new URL(a.url).searchParams.get('client');
    assert.match(id, /^[A-Za-z0-9_-]{8,64}$/);
    assert.equal(new URL(b.url).searchParams.get('client'), id);
    a.close(); b.close();
  } finally {
    globalThis.localStorage = saved;
  }
  const own = new HttpSink({ server: 'http://x', clientId: 'mine-1234', listen: false, fetch: async () => ({ ok: true }) });
  assert.equal(own.url, 'http://x/v1/telemetry?client=mine-1234');
  own.close();
});

const manifest = (variants) => ({ name: 'digits', version: 1, labels: ['a'], input: { height: 2, width: 2, channels: 1 }, variants });
const variant = (name, sha = SHA('a')) => ({ name, engine: 'tfjs', format: 'layers-model', files: [{ path: 'model.json', role: 'model', bytes: 1, sha256: sha }] });

test('one malformed sha256 drops its variant, not the manifest', () => {
  const m = validateManifest(manifest([variant('uint8', 'xyz'), variant('float32')]));
  assert.deepEqual(m.variants.map((v) => v.name), ['float32']);
  assert.equal(m.rejected[0].name, 'uint8');
  assert.throws(() => validateManifest(manifest([variant('uint8', SHA('A'))])), LoadError);
});

test('the last good manifest is used on 5xx (stale-cache) and on network errors, not on 4xx', async () => {
  const kept = new Map();
  const cache = { getManifest: async (k) => kept.get(k) ?? null, putManifest: async (k, m) => kept.set(k, m) };
  const good = manifest([variant('float32')]);
  const ok = async () => ({ ok: true, status: 200, json: async () => good });
  assert.equal((await fetchManifest({ server: 'http://x', model: 'digits', cache, fetch: ok })).source, 'network');
  const full = async () => ({ ok: false, status: 500, json: async () => ({ error: 'disk full' }) });
  const stale = await fetchManifest({ server: 'http://x', model: 'digits', cache, fetch: full });
  assert.equal(stale.source, 'stale-cache');
  assert.match(stale.reason, /HTTP 500 \(disk full\)/);
  assert.deepEqual(stale.manifest, good);
  const down = async () => { throw new TypeError('fetch failed'); };
  assert.equal((await fetchManifest({ server: 'http://x', model: 'digits', cache, fetch: down })).source, 'offline-cache');
  const gone = async () => ({ ok: false, status: 404, json: async () => ({}) });
  await assert.rejects(fetchManifest({ server: 'http://x', model: 'digits', cache, fetch: gone }), LoadError);
});

test('model.json vouches for its shards: a manifest naming another file fails that variant', () => {
  const shard = new Uint8Array([1, 2, 3, 4]).buffer;
  const doc = (sha) => ({ modelTopology: {}, weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: [], sha256: [sha] }] });
  const v = { name: 'uint8', engine: 'tfjs', format: 'layers-model', files: [
    { path: 'model.json', role: 'model', bytes: 1, sha256: SHA('a') },
    { path: 'group1-shard1of1.bin', role: 'weights', bytes: 4, sha256: SHA('b') }] };
  const files = (sha) => new Map([['model.json', new TextEncoder().encode(JSON.stringify(doc(sha))).buffer], ['group1-shard1of1.bin', shard]]);
  assert.equal(buildArtifacts(v, files(SHA('b'))).weightData.byteLength, 4);
  assert.throws(() => buildArtifacts(v, files(SHA('c'))), IntegrityError);
  // Models converted elsewhere (no sha256 in the group) load as before.
  assert.doesNotThrow(() => vouch(v, { paths: ['group1-shard1of1.bin'] }, 'group1-shard1of1.bin', 0));
});
