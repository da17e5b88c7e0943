// Load progress: the stream reader, the per-file and overall counts, cache vs network, and a
// failed variant giving back its bytes so the total still reaches 100 %.
import test from 'node:test';
import assert from 'node:assert/strict';
import { LoadProgress, readBody, STEP_BYTES } from '../src/progress.js';
import { loadVariantFiles } from '../src/loader.js';
import { BlobCache, sha256Hex } from '../src/cache.js';

/** A Response whose body arrives in `chunk`-byte pieces. */
function chunkedResponse(bytes, chunk) {
  let offset = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (offset >= bytes.byteLength) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(offset, offset + chunk));
      offset += chunk;
    },
  });
  return new Response(body);
}

function randomBytes(n, seed = 1) {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i += 1) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out[i] = x & 0xff;
  }
  return out;
}

async function fileOf(path, bytes) {
  const sha256 = await sha256Hex(bytes);
  return { path, role: 'weights', url: `/v1/blobs/${sha256}`, bytes: bytes.byteLength, sha256 };
}

test('readBody reads a stream into one buffer and reports every chunk', async () => {
  const bytes = randomBytes(100_000);
  const seen = [];
  const out = await readBody(chunkedResponse(bytes, 16_384), bytes.byteLength, (n) => seen.push(n));
  assert.deepEqual(new Uint8Array(out), bytes);
  assert.equal(seen.at(-1), bytes.byteLength);
  assert.equal(seen.length, Math.ceil(100_000 / 16_384));
  // A body longer than announced grows the buffer (integrity refuses it later) and is kept whole.
  const longer = await readBody(chunkedResponse(bytes, 7_000), 10, () => {});
  assert.deepEqual(new Uint8Array(longer), bytes);
});

test('readBody on a byte stream reads at most maxChunk bytes a read, straight into its buffer', async () => {
  const bytes = randomBytes(300_000, 5);
  const byteStream = () => new Response(new ReadableStream({
    type: 'bytes',
    start(controller) { controller.enqueue(bytes.slice()); controller.close(); }, // one big chunk
  }));
  for (const expected of [bytes.byteLength, 1000, bytes.byteLength + 50]) {
    const seen = [];
    const out = await readBody(byteStream(), expected, (n) => seen.push(n), { maxChunk: 32_768 });
    assert.deepEqual(new Uint8Array(out), bytes, `expected ${expected}`);
    assert.equal(seen.at(-1), bytes.byteLength);
    if (expected >= bytes.byteLength) {
      for (let i = 1; i < seen.length; i += 1) assert.ok(seen[i] - seen[i - 1] <= 32_768);
    }
  }
});

test('network downloads report at least every step and end at 100 %, then cache hits report whole files', async () => {
  const sizes = [3 * 1024 * 1024 + 17, 2 * 1024 * 1024, 999];
  const blobs = sizes.map((n, i) => randomBytes(n, i + 2));
  const variant = { name: 'float32', engine: 'tfjs', files: await Promise.all(blobs.map((b, i) => fileOf(`shard${i}.bin`, b))) };
  const bySha = new Map(variant.files.map((f, i) => [f.url, blobs[i]]));
  const fetch = async (url) => chunkedResponse(bySha.get(new URL(url).pathname), 64 * 1024);
  const events = [];
  const progress = new LoadProgress((e) => events.push(e));
  const report = await loadVariantFiles(variant, { server: 'http://x/', fetch, cache: null, progress });
  assert.equal(report.fromNetwork, 3);
  const total = sizes.reduce((a, b) => a + b, 0);
  const downloads = events.filter((e) => e.phase === 'download');
  assert.ok(downloads.every((e) => e.source === 'network' && e.overall.total === total));
  for (const file of variant.files) {
    assert.equal(downloads.filter((e) => e.file === file.path).at(-1).loaded, file.bytes);
  }
  // Files arrive in parallel; the overall count is reported at least every step (+ one chunk).
  const overall = [0, ...downloads.map((e) => e.overall.loaded)];
  for (let i = 1; i < overall.length; i += 1) {
    assert.ok(overall[i] >= overall[i - 1], 'overall never goes back');
    assert.ok(overall[i] - overall[i - 1] <= STEP_BYTES + 64 * 1024, `gap ${overall[i] - overall[i - 1]}`);
  }
  assert.equal(overall.at(-1), total);
  const verifies = events.filter((e) => e.phase === 'verify');
  assert.equal(verifies.length, 3);
  assert.equal(verifies.at(-1).overall.filesDone, 3);
  assert.equal(events.at(-1).fraction, 1);

  // The same files again from a (memory) cache: one download + one verify event per file.
  const store = new Map();
  const cache = new BlobCache({ caches: { open: async () => ({
    match: async (k) => (store.has(String(k)) ? new Response(store.get(String(k)).slice(0)) : undefined),
    put: async (k, r) => { store.set(String(k), await r.arrayBuffer()); },
    delete: async (k) => store.delete(String(k)),
  }) } });
  for (let i = 0; i < blobs.length; i += 1) await cache.put(variant.files[i].sha256, blobs[i].buffer);
  const cached = [];
  await loadVariantFiles(variant, { server: 'http://x/', fetch, cache, progress: new LoadProgress((e) => cached.push(e)) });
  assert.deepEqual(cached.filter((e) => e.phase === 'download').map((e) => [e.source, e.loaded]).sort(),
    variant.files.map((f) => ['cache', f.bytes]).sort());
  assert.equal(cached.at(-1).fraction, 1);
});

test('an abandoned variant gives its missing bytes back; ready is 100 %', () => {
  const events = [];
  const p = new LoadProgress((e) => events.push(e));
  p.expect('uint8', [{ path: 'a.bin', bytes: 1000 }, { path: 'b.bin', bytes: 1000 }]);
  p.bytes('uint8', { path: 'a.bin', bytes: 1000 }, 1000, 'network');
  p.abandon('uint8');
  p.expect('float32', [{ path: 'c.bin', bytes: 4000 }]);
  p.bytes('float32', { path: 'c.bin', bytes: 4000 }, 4000, 'network');
  p.verified('float32', { path: 'c.bin', bytes: 4000 }, 'network');
  assert.deepEqual(events.at(-1).overall, { loaded: 5000, total: 5000, files: 3, filesDone: 3 });
  assert.equal(events.at(-1).fraction, 1);
  p.phase('compile', { engine: 'tfjs', backend: 'wasm', variant: 'float32' });
  p.phase('ready', { engine: 'tfjs', backend: 'wasm', variant: 'float32' });
  assert.deepEqual(events.slice(-2).map((e) => [e.phase, e.backend, e.fraction]), [['compile', 'wasm', 1], ['ready', 'wasm', 1]]);
});

test('a listener that throws does not break the load; no listener means no stream reader', async () => {
  const p = new LoadProgress(() => { throw new Error('boom'); });
  p.phase('manifest');
  assert.equal(new LoadProgress(undefined).active, false);
  const bytes = randomBytes(5000);
  const variant = { name: 'v', files: [await fileOf('x.bin', bytes)] };
  const report = await loadVariantFiles(variant, { server: 'http://x/', fetch: async () => new Response(bytes), cache: null, progress: p });
  assert.equal(report.fromNetwork, 1);
});
