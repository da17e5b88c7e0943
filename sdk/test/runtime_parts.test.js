// The runtime's parts split out of runtime.js (issue 18): the gate serialising exclusive work with
// predictions, the reach of a failure and the recovery order, the start loop's pure rules, the
// release rule — plus the start loop and a recovery on a runtime stand-in with fake engines.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Gate } from '../src/gate.js';
import { failedKeys, fallbackEntry, isFailed, markFailed, recover, recoveryOrder } from '../src/recovery.js';
import { firstForRemembered, sameBackendFirst, start, sumFiles, noFiles } from '../src/starter.js';
import { releaseScope } from '../src/lifecycle.js';
import { candidateKey } from '../src/selection.js';
import { checkOutputs } from '../src/runtime.js';

const c = (engine, backend, variant, extra = {}) => ({ engine, backend, variant, index: 0, bytes: 1e6, gpu: backend === 'webgl' || backend === 'webgpu', software: false, ...extra });
const keys = (cs) => cs.map(candidateKey);
const deferred = () => {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
};

test('gate: exclusive work waits for predictions in flight; predictions wait for it; a failure does not wedge it', async () => {
  const gate = new Gate();
  const log = [];
  const pred = deferred();
  const tracked = gate.track(pred.promise.then(() => log.push('prediction done')));
  const section = gate.exclusive(async () => { log.push('exclusive'); return 7; });
  assert.equal(gate.busy, true);
  await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(log, [], 'the exclusive section waits for the prediction in flight');
  pred.resolve();
  await tracked;
  const turn = gate.turn().then(() => log.push('next prediction'));
  assert.equal(await section, 7);
  await turn;
  assert.deepEqual(log, ['prediction done', 'exclusive', 'next prediction']);
  await assert.rejects(gate.exclusive(() => { throw new Error('boom'); }), /boom/);
  assert.equal(await gate.exclusive(() => 'after'), 'after');
  assert.equal(gate.busy, false);
  await assert.rejects(gate.track(Promise.reject(new Error('predict failed'))), /predict failed/);
  assert.equal(gate._running.size, 0, 'a failed prediction is not left in flight');
});

test('recovery: a failure reaches a candidate, a backend (backend-init) or a variant (bad files)', () => {
  const failed = new Set();
  markFailed(failed, c('tfjs', 'webgl', 'uint8'), { code: 'backend-init' });
  assert.ok(isFailed(failed, c('tfjs', 'webgl', 'float32')), 'every variant of a backend that cannot start');
  assert.ok(!isFailed(failed, c('tfjs', 'wasm', 'uint8')));
  markFailed(failed, c('litert', 'wasm', 'tflite-int8'), { code: 'integrity' });
  assert.ok(isFailed(failed, c('litert', 'webgpu', 'tflite-int8')), 'bad files fail the variant on every backend');
  markFailed(failed, c('tfjs', 'wasm', 'uint8'), { code: 'nan' });
  assert.ok(isFailed(failed, c('tfjs', 'wasm', 'uint8')) && !isFailed(failed, c('tfjs', 'wasm', 'float32')));
  const all = [c('tfjs', 'webgl', 'uint8'), c('tfjs', 'wasm', 'uint8'), c('tfjs', 'wasm', 'float32'), c('litert', 'wasm', 'tflite-int8')];
  assert.deepEqual([...failedKeys(all, failed)], ['tfjs/webgl/uint8', 'tfjs/wasm/uint8', 'litert/wasm/tflite-int8']);
  assert.deepEqual(fallbackEntry(c('tfjs', 'webgl', 'uint8'), Object.assign(new Error('WebGL context lost'), { code: 'backend-lost' }), 'predict'),
    { from: 'tfjs/webgl/uint8', phase: 'predict', code: 'backend-lost', reason: 'WebGL context lost' });
  assert.equal(fallbackEntry(c('tfjs', 'cpu', 'uint8'), 'plain', 'load').code, 'error');
  assert.equal(checkOutputs([Float32Array.from([0.5, 0.5])]), null, 'runtime.js still exports checkOutputs');
});

test('recovery order: measured first by speed, then the same variant on other backends (lost backend) or the next variant (NaN)', () => {
  const candidates = [c('tfjs', 'webgl', 'uint8'), c('tfjs', 'wasm', 'uint8'), c('tfjs', 'webgl', 'float32'), c('tfjs', 'wasm', 'float32'), c('litert', 'wasm', 'tflite-int8')];
  const from = { engine: 'tfjs', backend: 'webgl', variant: 'uint8' };
  const measured = [
    { ok: true, ms: 9, candidate: { engine: 'litert', backend: 'wasm', variant: 'tflite-int8' } },
    { ok: false, candidate: { engine: 'tfjs', backend: 'wasm', variant: 'float32' } },
  ];
  const lost = recoveryOrder(from, { code: 'backend-lost' }, { candidates, measured, failed: new Set(['tfjs/webgl/uint8']) });
  assert.equal(candidateKey(lost[0]), 'litert/wasm/tflite-int8', 'the measured candidate first');
  assert.equal(candidateKey(lost[1]), 'tfjs/wasm/uint8', 'then the same variant on another backend');
  assert.ok(!keys(lost).includes('tfjs/webgl/uint8'), 'never the failing candidate');
  assert.equal(new Set(keys(lost)).size, lost.length, 'no duplicates');
  const nan = recoveryOrder(from, { code: 'nan' }, { candidates, failed: new Set(['tfjs/webgl/uint8']) });
  assert.equal(candidateKey(nan[0]), 'tfjs/webgl/float32', 'bad outputs: the next variant on the same backend');
  const none = recoveryOrder(from, { code: 'nan' }, { candidates, failed: new Set(candidates.map(candidateKey)) });
  assert.deepEqual(none, []);
});

test('start rules: a remembered GPU path answers first on its engine\'s CPU path; bad files try the next variant first; file reports add up', () => {
  const candidates = [c('litert', 'wasm', 'tflite-float16'), c('litert', 'wasm', 'tflite-int8'), c('litert', 'webgpu', 'tflite-int8'), c('tfjs', 'wasm', 'uint8')];
  const gpu = { engine: 'litert', backend: 'webgpu', variant: 'tflite-int8', measured: true };
  const r = firstForRemembered(gpu, candidates);
  assert.equal(candidateKey(r.first), 'litert/wasm/tflite-int8', 'same engine and variant, on the CPU');
  assert.deepEqual(r.promote, { engine: 'litert', backend: 'webgpu', variant: 'tflite-int8' });
  assert.deepEqual(firstForRemembered({ ...gpu, measured: false }, candidates), { first: { ...gpu, measured: false }, promote: null }, 'an unfinished visit is tried as it is');
  assert.deepEqual(firstForRemembered(null, candidates), { first: null, promote: null });
  const cpu = { engine: 'tfjs', backend: 'wasm', variant: 'uint8', measured: true };
  assert.equal(firstForRemembered(cpu, candidates).first, cpu);
  const order = [c('tfjs', 'wasm', 'float16'), c('litert', 'wasm', 'tflite-float16'), c('tfjs', 'wasm', 'float32')];
  assert.deepEqual(keys(sameBackendFirst(order, c('tfjs', 'wasm', 'uint8'))), ['tfjs/wasm/float16', 'tfjs/wasm/float32', 'litert/wasm/tflite-float16']);
  const a = { fromCache: 1, fromNetwork: 2, bytesFetched: 10, ms: 5, evicted: ['x'] };
  assert.deepEqual(sumFiles(sumFiles(noFiles(), a), a), { fromCache: 2, fromNetwork: 4, bytesFetched: 20, ms: 10, evicted: ['x', 'x'] });
});

test('release rule: nothing for the same path, the backend within an engine, the whole engine across engines', () => {
  assert.equal(releaseScope(c('tfjs', 'webgl', 'uint8'), c('tfjs', 'webgl', 'float32')), 'none');
  assert.equal(releaseScope(c('tfjs', 'webgl', 'uint8'), c('tfjs', 'wasm', 'uint8')), 'backend');
  assert.equal(releaseScope(c('tfjs', 'wasm', 'uint8'), c('litert', 'wasm', 'tflite-int8')), 'engine');
});

/** A runtime stand-in: what starter.start and recovery.recover use, with build/activate faked. */
function standIn(candidates, { failFiles = [], failBuild = [] } = {}) {
  const rt = {
    candidates, failed: new Set(), fallbacks: [], compileMs: {}, current: null, engine: null, model: null,
    selection: { upgrade: [] }, built: [], remembered: [],
    engines: { get: () => Promise.resolve({}), loaded: () => new Set() },
    manifest: { variants: [] },
    _loadedRuntimes: () => new Set(),
    _isFailed: (x) => isFailed(rt.failed, x),
    _markFailed: (x, err) => markFailed(rt.failed, x, err),
    _fallback: (x, err, phase) => rt.fallbacks.push(fallbackEntry(x, err, phase)),
    _remember: (extra) => rt.remembered.push(extra),
    async _activate(x) {
      rt.built.push(candidateKey(x));
      if (failBuild.includes(candidateKey(x))) throw Object.assign(new Error('cannot build'), { code: 'backend-init' });
      rt.current = x;
      rt.engine = { disposeModel() {} };
      return { warmupMs: 3, loadMs: 4 };
    },
  };
  rt.fetched = [];
  rt._files = async (variant, engine) => {
    rt.fetched.push(`${engine}//${variant}`);
    if (failFiles.includes(`${engine}//${variant}`)) throw Object.assign(new Error('sha256 mismatch'), { code: 'integrity' });
    return { artifacts: { variant }, report: { ...noFiles(), fromNetwork: 1, bytesFetched: 10 } };
  };
  return rt;
}

test('start loop: a backend that cannot start falls back in order, and the fallback is reported', async () => {
  const candidates = [c('litert', 'wasm', 'tflite-int8', { bytes: 1 }), c('tfjs', 'wasm', 'uint8', { bytes: 1e8 })];
  const rt = standIn(candidates, { failBuild: ['litert/wasm/tflite-int8'] });
  const files = await start(rt, null, async () => {});
  assert.equal(files.bytesFetched, 20, 'both variants\' files were fetched');
  assert.deepEqual(rt.built, ['litert/wasm/tflite-int8', 'tfjs/wasm/uint8']);
  assert.equal(candidateKey(rt.current), 'tfjs/wasm/uint8');
  assert.equal(rt.selection.source, 'start');
  assert.deepEqual(rt.selection.results.map((r) => r.ok), [false, true]);
  assert.deepEqual(rt.fallbacks.map((f) => [f.from, f.phase]), [['litert/wasm/tflite-int8', 'load']]);
});

test('start loop: bad files move to the same engine and backend\'s next variant before another engine; files fetched once', async () => {
  const candidates = [
    c('tfjs', 'wasm', 'uint8', { bytes: 1 }), c('litert', 'wasm', 'tflite-int8', { bytes: 2 }),
    c('tfjs', 'wasm', 'float32', { bytes: 3e6 }), c('tfjs', 'cpu', 'uint8', { bytes: 1 }),
  ];
  const rt = standIn(candidates, { failFiles: ['tfjs//uint8'] });
  await start(rt, null, async () => {});
  assert.equal(candidateKey(rt.current), 'tfjs/wasm/float32');
  assert.deepEqual(rt.fetched, ['tfjs//uint8', 'tfjs//float32'], 'the failed variant is not fetched again for tfjs/cpu');
  assert.deepEqual(rt.fallbacks.map((f) => [f.from, f.code]), [['tfjs/wasm/uint8', 'integrity']]);
  const remembered = { engine: 'tfjs', backend: 'cpu', variant: 'uint8', measured: true };
  const again = standIn(candidates);
  await start(again, remembered, async () => {});
  assert.equal(again.selection.source, 'remembered');
  assert.equal(again.upgrade.state, 'remembered', 'a finished measurement skips the upgrade');
});

test('recover: a lost backend moves to the next candidate, reports it and remembers the new path', async () => {
  const candidates = [c('tfjs', 'webgl', 'uint8'), c('tfjs', 'wasm', 'uint8')];
  const rt = standIn(candidates);
  rt.current = { engine: 'tfjs', backend: 'webgl', variant: 'uint8' };
  rt.engine = { disposeModel() {} };
  rt.model = {};
  await recover(rt, Object.assign(new Error('context lost'), { code: 'backend-lost' }));
  assert.equal(candidateKey(rt.current), 'tfjs/wasm/uint8');
  assert.deepEqual(rt.fallbacks.map((f) => [f.from, f.phase, f.code]), [['tfjs/webgl/uint8', 'predict', 'backend-lost']]);
  assert.deepEqual(rt.remembered, [{ measured: false }]);
  const stuck = standIn([c('tfjs', 'webgl', 'uint8')]);
  stuck.current = { engine: 'tfjs', backend: 'webgl', variant: 'uint8' };
  stuck.engine = { disposeModel() {} };
  await assert.rejects(recover(stuck, new Error('lost')), (err) => err.code === 'exhausted');
});
