import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpSink, batchUrl } from '../src/sinks/http.js';

const predict = { type: 'predict', t: 5, model: 'digits', version: 3, engine: 'tfjs', backend: 'wasm', variant: 'uint8', ms: 12.5, batch: 1 };
const keyOf = (url) => new URL(url).searchParams.get('batch');

test('a retried batch keeps its idempotency key and its events; new events get a new key', async () => {
  const calls = [];
  let status = 502;
  const fetch = async (url, init) => { calls.push({ key: keyOf(url), n: JSON.parse(init.body).length }); return { ok: status === 200, status }; };
  const sink = new HttpSink({ server: 'http://x', fetch, intervalMs: 60000, maxBatch: 4, listen: false });
  for (let i = 0; i < 3; i += 1) sink.send(predict);
  await sink.flush();
  for (let i = 0; i < 3; i += 1) sink.send(predict); // arrive while the failed batch waits
  status = 200;
  await sink.flush();
  await sink.flush();
  assert.equal(calls.length, 3);
  assert.match(calls[0].key, /^[0-9a-f-]{36}$/);
  assert.deepEqual(calls[1], calls[0], 'the retry is the same 3 events under the same key');
  assert.notEqual(calls[2].key, calls[0].key);
  assert.equal(calls[2].n, 3);
  assert.equal(sink.sent, 6);
  sink.close();
});

test('a thrown fetch (connection reset) is retried under the same key', async () => {
  const keys = [];
  let fail = true;
  const fetch = async (url) => { keys.push(keyOf(url)); if (fail) { fail = false; throw new TypeError('reset'); } return { ok: true, status: 200 }; };
  const sink = new HttpSink({ server: 'http://x', fetch, intervalMs: 60000, listen: false });
  sink.send(predict);
  await sink.flush();
  await sink.flush();
  assert.equal(keys.length, 2);
  assert.equal(keys[0], keys[1]);
  sink.close();
});

test('beacons carry a key, the pending retry its own', async () => {
  const urls = [];
  const sink = new HttpSink({ server: 'http://x', fetch: async () => ({ ok: false, status: 503 }), beacon: (u) => { urls.push(u); return true; }, listen: false, intervalMs: 60000 });
  sink.send(predict);
  await sink.flush();
  const failedKey = sink.queue[0].key;
  sink.send(predict);
  assert.ok(sink.flushBeacon());
  assert.equal(urls.length, 2);
  assert.equal(keyOf(urls[0]), failedKey);
  assert.notEqual(keyOf(urls[1]), failedKey);
  assert.equal(batchUrl('http://x/v1/telemetry?a=1', 'k'), 'http://x/v1/telemetry?a=1&batch=k');
  sink.close();
});
