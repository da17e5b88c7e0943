import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpSink, toWire } from '../src/sinks/http.js';

const predict = { type: 'predict', t: 5, model: 'digits', version: 3, engine: 'tfjs', backend: 'wasm', variant: 'uint8', device: 'desktop-2c-coi', ms: 12.5, batch: 1 };

test('toWire keeps only schema fields and maps nested ones', () => {
  assert.deepEqual(toWire(predict), { type: 'predict', model: 'digits', version: 3, variant: 'uint8', engine: 'tfjs', backend: 'wasm', device: 'desktop-2c-coi', ms: 12.5, batch: 1 });
  const mem = toWire({ type: 'memory', model: 'digits', memory: { numTensors: 7, numBytes: 1000, numBytesInGPU: 5 }, exceeded: [] });
  assert.equal(mem.num_tensors, 7);
  assert.equal(mem.num_bytes_gpu, 5);
  assert.equal(mem.exceeded, undefined);
  const load = toWire({ type: 'load', model: 'digits', backend: 'wasm', variant: 'uint8', ms: 900, probes: [{ ok: true, candidate: { backend: 'wasm', variant: 'uint8' }, warmupMs: 80 }] });
  assert.equal(load.warmup_ms, 80);
  assert.equal(toWire({ type: 'error', model: 'digits', message: 'x'.repeat(900) }).reason.length, 500);
  assert.equal(toWire({ type: 'bogus', model: 'digits' }), null);
  assert.equal(toWire({ type: 'init' }), null);
});

test('send never touches the network; a full batch or the timer flushes', async () => {
  const bodies = [];
  const fetch = async (url, init) => { bodies.push(JSON.parse(init.body)); assert.equal(init.headers['content-type'], 'text/plain'); return { ok: true, status: 200 }; };
  const sink = new HttpSink({ server: 'http://x', fetch, intervalMs: 60000, maxBatch: 3, listen: false });
  sink.send(predict);
  sink.send(predict);
  assert.equal(bodies.length, 0);
  sink.send(predict);
  await new Promise((r) => setTimeout(r, 10));
  await sink.inFlight;
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].length, 3);
  assert.ok(bodies[0][0].age_ms >= 0);
  sink.close();
});

test('the queue is bounded and failures are retried, 4xx is not', async () => {
  let status = 503;
  let calls = 0;
  const fetch = async () => { calls += 1; return { ok: status === 200, status }; };
  const sink = new HttpSink({ server: 'http://x', fetch, intervalMs: 60000, maxBatch: 500, maxQueue: 500, listen: false });
  for (let i = 0; i < 700; i += 1) sink.send(predict);
  assert.equal(sink.queue.length, 500);
  assert.equal(sink.dropped, 200);
  await sink.flush();
  assert.equal(sink.queue.length, 500, 'a 503 puts the batch back');
  status = 400;
  await sink.flush();
  assert.equal(sink.queue.length, 0);
  assert.equal(calls, 2);
  sink.close();
});

test('pagehide sends everything by beacon in bodies under 60 KB', () => {
  const beacons = [];
  const sink = new HttpSink({ server: 'http://x', fetch: async () => ({ ok: true }), beacon: (u, b) => { beacons.push(b); return true; }, listen: false, intervalMs: 60000 });
  for (let i = 0; i < 499; i += 1) sink.send({ ...predict, message: undefined, reason: 'r'.repeat(200) });
  assert.ok(sink.flushBeacon());
  assert.ok(beacons.length > 1);
  assert.ok(beacons.every((b) => b.length < 60000));
  assert.equal(beacons.map((b) => JSON.parse(b).length).reduce((a, b) => a + b), 499);
  sink.close();
});
