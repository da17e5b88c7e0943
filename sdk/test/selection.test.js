// Pure selection logic: probe order, variant order, ranking, fallback order, timing budget.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  ChoiceStore, candidateKey, choiceKey, fallbackCandidates, probeOrder, rank, shareDeadline, timePairs, timeRuns, variantOrder,
} from '../src/selection.js';

const V = [
  { name: 'uint8', engine: 'tfjs' }, { name: 'float16', engine: 'tfjs' }, { name: 'float32', engine: 'tfjs' },
  { name: 'tflite-int8', engine: 'litert' }, { name: 'bad', engine: 'tfjs', offered: false },
];

test('probe order puts usually-fast backends first and keeps unknown ones last', () => {
  assert.deepEqual(probeOrder(['cpu', 'webgl', 'wasm', 'webgpu']), ['webgpu', 'wasm', 'webgl', 'cpu']);
  assert.deepEqual(probeOrder(['cpu', 'future', 'wasm']), ['wasm', 'cpu', 'future']);
  assert.deepEqual(probeOrder(['cpu', 'webgl', 'wasm'], ['cpu', 'webgl']), ['webgl', 'cpu']);
});

test('variant order follows the manifest, per engine, skipping variants not offered', () => {
  assert.deepEqual(variantOrder(V, 'tfjs'), ['uint8', 'float16', 'float32']);
  assert.deepEqual(variantOrder(V, 'litert'), ['tflite-int8']);
  assert.deepEqual(variantOrder(V, 'tfjs', 'float16'), ['float16', 'uint8', 'float32']);
  assert.deepEqual(variantOrder(V, 'tfjs', 'gone'), ['uint8', 'float16', 'float32']);
  assert.deepEqual(variantOrder(V, 'tfjs', undefined, ['float32']), ['float32']);
});

test('rank sorts successful probes by median and drops failures', () => {
  const r = rank([
    { candidate: { backend: 'webgl' }, ok: true, ms: 900 },
    { candidate: { backend: 'wasm' }, ok: true, ms: 27 },
    { candidate: { backend: 'webgpu' }, ok: false, error: 'no adapter' },
    { candidate: { backend: 'cpu' }, ok: true, ms: 27 },
  ]);
  assert.deepEqual(r.map((x) => x.candidate.backend), ['wasm', 'cpu', 'webgl']);
});

test('a backend failure tries the same variant on the next-fastest backend first', () => {
  const cur = { engine: 'tfjs', backend: 'webgl', variant: 'uint8' };
  const opts = { variants: ['uint8', 'float16', 'float32'], backends: ['webgl', 'wasm', 'cpu'] };
  const got = fallbackCandidates(cur, 'backend', opts, new Set()).map(candidateKey);
  assert.deepEqual(got.slice(0, 3), ['tfjs/wasm/uint8', 'tfjs/cpu/uint8', 'tfjs/wasm/float16']);
  assert.ok(!got.some((k) => k.includes('/webgl/')), 'the broken backend is not retried');
});

test('a variant failure (integrity, NaN) walks uint8 -> float16 -> float32 on the same backend', () => {
  const cur = { engine: 'tfjs', backend: 'wasm', variant: 'uint8' };
  const opts = { variants: ['uint8', 'float16', 'float32'], backends: ['wasm', 'cpu'] };
  const failed = new Set(['tfjs/wasm/float16']);
  const got = fallbackCandidates(cur, 'variant', opts, failed).map(candidateKey);
  assert.deepEqual(got, ['tfjs/wasm/float32', 'tfjs/cpu/float16', 'tfjs/cpu/float32']);
});

test('timePairs alternates the two paths (A B, B A, ...), so a drift falls on both, within deadline and run limits', async () => {
  let t = 0;
  const now = () => t;
  const order = [];
  // the machine gets faster with every run (clocks ramping up): 10, 9, 8, ... ms
  let cost = 10;
  const run = (name) => async () => {
    order.push(name);
    t += cost;
    cost = Math.max(1, cost - 1);
  };
  const { a, b } = await timePairs(run('A'), run('B'), { deadline: 1e9, now, minRuns: 3, maxRuns: 4 });
  assert.deepEqual(order, ['A', 'B', 'B', 'A', 'A', 'B', 'B', 'A']);
  assert.deepEqual(a, [10, 7, 6, 3]);
  assert.deepEqual(b, [9, 8, 5, 4]);
  const sum = (xs) => xs.reduce((x, y) => x + y, 0);
  assert.equal(sum(a), sum(b), 'the same path on both sides measures the same under a steady drift');
  t = 0;
  cost = 10;
  const short = await timePairs(run('A'), run('B'), { deadline: 25, now, minRuns: 1, maxRuns: 9 });
  assert.equal(short.a.length, 1, 'the deadline stops it once minRuns are in (a second pair would not fit)');
  t = 0;
  cost = 10;
  const floor = await timePairs(run('A'), run('B'), { deadline: 0, now, minRuns: 2, maxRuns: 9 });
  assert.deepEqual([floor.a.length, floor.b.length], [2, 2], 'minRuns even past the deadline');
});

test('timeRuns stops at the deadline but always times at least one run', async () => {
  let t = 0;
  const now = () => t;
  const slow = async () => { t += 400; };
  assert.equal((await timeRuns(slow, { deadline: 100, now, maxRuns: 5 })).length, 1);
  t = 0;
  const fast = async () => { t += 10; };
  const runs = await timeRuns(fast, { deadline: 35, now, maxRuns: 5 });
  assert.ok(runs.length >= 2 && runs.length <= 4, `got ${runs.length}`);
  t = 0;
  assert.equal((await timeRuns(fast, { deadline: 1e9, now, maxRuns: 5 })).length, 5);
});

test('each remaining backend gets an equal share of what is left of the budget', () => {
  assert.equal(shareDeadline(0, 1500, 3, 0), 500);
  assert.equal(shareDeadline(0, 1500, 2, 1000), 1250);
  assert.equal(shareDeadline(0, 1500, 1, 2000), 2000, 'no time left: deadline is now');
});

test('remembered choices are keyed by device and model version and survive bad storage', () => {
  assert.notEqual(choiceKey('d', 'digits', 3), choiceKey('d', 'digits', 4));
  assert.notEqual(choiceKey('a', 'digits', 3), choiceKey('b', 'digits', 3));
  const mem = new Map();
  const store = new ChoiceStore({ getItem: (k) => mem.get(k) ?? null, setItem: (k, v) => mem.set(k, v), removeItem: (k) => mem.delete(k) });
  store.set('k', { engine: 'tfjs', backend: 'wasm', variant: 'uint8' });
  assert.deepEqual(store.get('k'), { engine: 'tfjs', backend: 'wasm', variant: 'uint8' });
  mem.set('k', '{not json');
  assert.equal(store.get('k'), null);
  const broken = new ChoiceStore({ getItem: () => { throw new Error('denied'); }, setItem: () => { throw new Error('quota'); } });
  assert.equal(broken.get('k'), null);
  broken.set('k', { engine: 'tfjs', backend: 'wasm', variant: 'uint8' });
});
