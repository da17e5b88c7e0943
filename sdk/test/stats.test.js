// Latency stats, top-k, memory budget, telemetry sampling, input sniffing — the SDK's pure helpers.
import test from 'node:test';
import assert from 'node:assert/strict';
import { LatencyStats, median, percentile, topK } from '../src/stats.js';
import { MemoryGuard, normaliseBudget, overBudget } from '../src/memory.js';
import { Telemetry, shouldSample } from '../src/telemetry.js';
import { decodeOptions, imageSize, looksLikeText, rangeTransform, sniffImageType } from '../src/preprocess.js';
import { checkOutputs } from '../src/recovery.js';
import { bucket, deviceClass } from '../src/device.js';
import { fromPlain, InputError, toPlain } from '../src/errors.js';

test('latency window is bounded and percentiles use recent values', () => {
  const s = new LatencyStats(4);
  for (const ms of [100, 1, 2, 3, 4]) s.record(ms);
  const sum = s.summary();
  assert.equal(sum.predictions, 5);
  assert.equal(sum.meanMs, 22);
  assert.equal(sum.p95Ms, 4, 'the 100 ms outlier fell out of the 4-slot window');
  assert.equal(s.buffer.length, 4);
  assert.ok(Number.isNaN(new LatencyStats().summary().p50Ms));
  assert.equal(percentile([1, 2, 3, 4], 0.5), 2);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
});

test('topK returns plain label/probability objects, highest first', () => {
  const out = topK(Float32Array.from([0.1, 0.7, 0.2]), ['a', 'b', 'c'], 2);
  assert.deepEqual(out.map((x) => x.label), ['b', 'c']);
  assert.ok(Math.abs(out[0].p - 0.7) < 1e-6);
  assert.equal(topK([0.5, 0.5], ['x'], 5).length, 2);
});

test('NaN, infinite and all-zero outputs are rejected', () => {
  assert.equal(checkOutputs([Float32Array.from([0.2, 0.8])]), null);
  assert.match(checkOutputs([Float32Array.from([NaN, 1])]), /NaN/);
  assert.match(checkOutputs([Float32Array.from([0, 0])]), /zero/);
});

test('memory guard checks every N predictions against the budget', () => {
  const g = new MemoryGuard({ every: 3, budget: { numTensors: 10 } });
  const read = () => ({ numTensors: 11, numBytes: 5 });
  assert.equal(g.tick(read), null);
  assert.equal(g.tick(read), null);
  assert.deepEqual(g.tick(read).exceeded, ['numTensors 11 > 10']);
  assert.equal(g.checks, 1);
  assert.deepEqual(overBudget({ numBytes: 5 }, normaliseBudget(4)), ['numBytes 5 > 4']);
  assert.equal(normaliseBudget(undefined, 400 * 1024 * 1024).numBytes, 800 * 1024 * 1024, 'budget is at least 2x the model');
});

test('telemetry stamps context, samples predict events, survives a throwing sink', () => {
  const seen = [];
  let t = 0;
  const tel = new Telemetry([(e) => seen.push(e), () => { throw new Error('sink down'); }], { device: 'desktop-2c', predictSampleRate: 0.5, now: () => t });
  tel.set({ model: 'digits', version: 3, backend: 'wasm' });
  t = 12;
  tel.emit('load', { ms: 12 });
  for (let i = 0; i < 4; i += 1) tel.emit('predict', { ms: 1 });
  assert.equal(seen[0].type, 'load');
  assert.equal(seen[0].t, 12);
  assert.equal(seen[0].backend, 'wasm');
  assert.equal(seen[0].device, 'desktop-2c');
  assert.equal(seen.filter((e) => e.type === 'predict').length, 2);
  assert.equal(tel.sinkErrors, 3);
  assert.throws(() => tel.emit('bogus'), TypeError);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => shouldSample(n, 1 / 3)), [false, false, true, false, false, true]);
});

test('image types are sniffed from bytes and sizes read from headers', () => {
  const png = new Uint8Array(32);
  png.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  new DataView(png.buffer).setUint32(16, 8000);
  new DataView(png.buffer).setUint32(20, 6000);
  assert.equal(sniffImageType(png), 'png');
  assert.deepEqual(imageSize(png), { width: 8000, height: 6000 });
  // JPEG: SOI, an APP0 segment, then SOF0 with height 300, width 400.
  const jpg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc0, 0, 11, 8, 0x01, 0x2c, 0x01, 0x90, 3, 0, 0, 0]);
  assert.equal(sniffImageType(jpg), 'jpeg');
  assert.deepEqual(imageSize(jpg), { width: 400, height: 300 });
  assert.equal(sniffImageType(new TextEncoder().encode('hello, not an image')), null);
  assert.ok(looksLikeText(new TextEncoder().encode('plain text\nfile')));
  assert.ok(!looksLikeText(new Uint8Array([0, 1, 2, 3, 0, 0, 0, 255])));
});

test('a 50-megapixel image is downscaled on decode to at most maxPixels', () => {
  const opts = decodeOptions({ width: 8660, height: 5774 }, 4 * 1024 * 1024);
  assert.equal(opts.imageOrientation, 'from-image');
  // Whichever side ends up as the width after EXIF rotation, the result fits the cap.
  for (const [w, h] of [[8660, 5774], [5774, 8660]]) {
    const outH = Math.round((opts.resizeWidth * h) / w);
    assert.ok(opts.resizeWidth * outH <= 4 * 1024 * 1024, `${w}x${h} -> ${opts.resizeWidth}x${outH}`);
  }
  assert.equal(decodeOptions({ width: 640, height: 480 }).resizeWidth, undefined);
  assert.deepEqual(rangeTransform([0, 255]), { scale: 1, offset: 0 });
  assert.deepEqual(rangeTransform([-1, 1]), { scale: 2 / 255, offset: -1 });
});

test('device class is coarse; errors survive a round trip as plain objects', () => {
  assert.equal(deviceClass({ hardwareConcurrency: 6, deviceMemory: 8, userAgent: 'X' }, true), 'desktop-4c-8g-coi');
  assert.equal(deviceClass({ hardwareConcurrency: 8, userAgent: 'Mobile Android' }, false), 'mobile-8c');
  assert.equal(bucket(3, [1, 2, 4]), 2);
  const back = fromPlain(toPlain(new InputError('x.txt: not an image', 'not-image')));
  assert.ok(back instanceof InputError);
  assert.equal(back.code, 'not-image');
});
