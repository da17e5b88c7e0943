// The engine-agnostic selection (issue 18): candidates from manifest + browser facts, the start
// policy (remembered, else cheapest to start; never a software GPU first), the upgrade policy
// (what is measured in idle time), GPU facts from a fake WebGPU adapter, batch chunks.
import test from 'node:test';
import assert from 'node:assert/strict';
import { adapterFacts, gpuFacts, isSoftwareRenderer } from '../src/gpu.js';
import { engineBackends, listCandidates, startCost } from '../src/candidates.js';
import { earlyEngine, isMeasured, startOrder } from '../src/start.js';
import { Engines } from '../src/engines/index.js';
import { fitsBudget, upgradePlan } from '../src/upgrade.js';
import { batchChunks, bestBatch, defaultBatch } from '../src/batching.js';
import { candidateKey } from '../src/selection.js';

const CAPABLE = { wasm: true, simd: true, relaxedSimd: true, threads: true, crossOriginIsolated: true, cores: 16 };
const MB = 1e6;
const MANIFEST = {
  variants: [
    { name: 'uint8', engine: 'tfjs', bytes: 3.5 * MB }, { name: 'float16', engine: 'tfjs', bytes: 7 * MB },
    { name: 'float32', engine: 'tfjs', bytes: 14 * MB }, { name: 'tflite-float32', engine: 'litert', bytes: 14 * MB },
    { name: 'tflite-int8', engine: 'litert', bytes: 3.9 * MB },
  ],
};
const LITERT_ONLY = { variants: MANIFEST.variants.filter((v) => v.engine === 'litert') };

/** A fake navigator.gpu whose adapter says what a real one says. */
function fakeGpu(info, { fallback = false, none = false } = {}) {
  return {
    navigator: {
      gpu: {
        async requestAdapter(opts) {
          assert.equal(opts.powerPreference, 'high-performance');
          return none ? null : { info: { ...info, isFallbackAdapter: fallback }, isFallbackAdapter: fallback, features: new Set(), limits: {} };
        },
      },
    },
  };
}

const NVIDIA = { webgpu: adapterFacts({ info: { vendor: 'nvidia', architecture: '' } }), webgl: { renderer: 'ANGLE (NVIDIA, Vulkan 1.4.312 (NVIDIA NVIDIA H200 (0x00002335)), NVIDIA)', software: false } };
const SWIFTSHADER = {
  webgpu: adapterFacts({ info: { vendor: 'google', architecture: 'swiftshader', isFallbackAdapter: true } }),
  webgl: { renderer: 'ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader driver)', software: true },
};
const keys = (cs) => cs.map(candidateKey);

test('GPU facts: a hardware adapter, a fallback adapter, a software name, no adapter, no WebGPU', async () => {
  const hw = await gpuFacts(fakeGpu({ vendor: 'nvidia', architecture: '' }));
  assert.equal(hw.webgpu.vendor, 'nvidia');
  assert.equal(hw.webgpu.software, false);
  const fb = await gpuFacts(fakeGpu({ vendor: 'google', architecture: 'swiftshader' }, { fallback: true }));
  assert.equal(fb.webgpu.isFallbackAdapter, true);
  assert.equal(fb.webgpu.software, true);
  const named = await gpuFacts(fakeGpu({ vendor: 'mesa', architecture: 'llvmpipe' }));
  assert.equal(named.webgpu.software, true, 'a software name without the flag still counts');
  const none = await gpuFacts(fakeGpu({}, { none: true }));
  assert.equal(none.webgpu, null);
  assert.equal(none.webgpuError, 'no WebGPU adapter');
  assert.equal((await gpuFacts({ navigator: {} })).webgpuError, 'no navigator.gpu');
  assert.ok(isSoftwareRenderer(SWIFTSHADER.webgl.renderer));
  assert.ok(isSoftwareRenderer('Microsoft Basic Render Driver') && isSoftwareRenderer('llvmpipe (LLVM 15.0.6, 256 bits)'));
  assert.ok(!isSoftwareRenderer(NVIDIA.webgl.renderer) && !isSoftwareRenderer(''));
});

test('candidates: LiteRT.js on WebGPU beside wasm when an adapter is granted; none without', () => {
  const gpuBackends = engineBackends(NVIDIA, CAPABLE);
  assert.deepEqual(gpuBackends, { tfjs: ['webgpu', 'webgl', 'wasm', 'cpu'], litert: ['wasm', 'webgpu'] });
  const cs = listCandidates(MANIFEST, { backends: gpuBackends, gpu: NVIDIA });
  assert.ok(keys(cs).includes('litert/webgpu/tflite-int8'));
  assert.ok(cs.every((c) => !c.software));
  assert.deepEqual(engineBackends({ webgpu: null, webgl: null }, CAPABLE), { tfjs: ['wasm', 'cpu'], litert: ['wasm'] });
  const soft = listCandidates(MANIFEST, { backends: engineBackends(SWIFTSHADER, CAPABLE), gpu: SWIFTSHADER });
  assert.ok(soft.filter((c) => c.gpu).every((c) => c.software), 'SwiftShader candidates are marked software');
  // user options restrict backends and variants
  const only = listCandidates(MANIFEST, { backends: gpuBackends, gpu: NVIDIA, allowBackends: ['wasm'], allowVariants: ['uint8', 'tflite-int8'] });
  assert.deepEqual(keys(only), ['tfjs/wasm/uint8', 'litert/wasm/tflite-int8']);
});

test('start: cold visit answers first on a CPU path (no shader compile), cheapest to start; remembered first', () => {
  const cs = listCandidates(MANIFEST, { backends: engineBackends(NVIDIA, CAPABLE), gpu: NVIDIA });
  const cold = startOrder(cs);
  // 3.9 MB of int8 through LiteRT.js (flatbuffer mapped) beats TF.js's parse + dequantize of 3.5 MB
  assert.equal(candidateKey(cold[0]), 'litert/wasm/tflite-int8');
  assert.ok(cold.findIndex((c) => c.gpu) > cold.findIndex((c) => c.backend === 'wasm'));
  // a tiny model (digits): TF.js's smaller runtime wins
  const tiny = { variants: MANIFEST.variants.map((v) => ({ ...v, bytes: v.bytes / 100 })) };
  assert.equal(candidateKey(startOrder(listCandidates(tiny, { backends: engineBackends(NVIDIA, CAPABLE), gpu: NVIDIA }))[0]), 'tfjs/wasm/uint8');
  // once TF.js is loaded (a page that already has it), its wasm start is cheaper than fetching LiteRT.js
  const loaded = startOrder(cs, { loaded: new Set(['tfjs']) });
  assert.equal(candidateKey(loaded[0]), 'tfjs/wasm/uint8');
  const remembered = { engine: 'litert', backend: 'webgpu', variant: 'tflite-int8' };
  assert.equal(candidateKey(startOrder(cs, { remembered })[0]), 'litert/webgpu/tflite-int8');
  assert.ok(isMeasured(remembered) && !isMeasured({ ...remembered, measured: false }) && !isMeasured(null));
});

test('start: a software GPU is never before a CPU path, but still runs when it is all there is', () => {
  const cs = listCandidates(MANIFEST, { backends: engineBackends(SWIFTSHADER, CAPABLE), gpu: SWIFTSHADER });
  const order = startOrder(cs);
  const firstSoft = order.findIndex((c) => c.software);
  assert.ok(order.slice(0, firstSoft).some((c) => c.backend === 'cpu'), 'even TF.js cpu comes before SwiftShader');
  assert.ok(startCost(order[firstSoft]) > startCost(order[firstSoft - 1]));
  const onlyGl = listCandidates(MANIFEST, { backends: engineBackends(SWIFTSHADER, CAPABLE), gpu: SWIFTSHADER, allowBackends: ['webgl'] });
  assert.deepEqual(keys(startOrder(onlyGl)).slice(0, 1), ['tfjs/webgl/uint8']);
});

test('start: a manifest with only TFLite variants starts on LiteRT.js, no special case', () => {
  const cs = listCandidates(LITERT_ONLY, { backends: engineBackends(NVIDIA, CAPABLE), gpu: NVIDIA });
  assert.ok(cs.every((c) => c.engine === 'litert'));
  assert.equal(candidateKey(startOrder(cs)[0]), 'litert/wasm/tflite-int8');
});

test('early engine: remembered or only engine started, a cold threaded visit prefetches LiteRT.js, else nothing', () => {
  const NO_THREADS = { ...CAPABLE, threads: false, crossOriginIsolated: false };
  assert.deepEqual(earlyEngine({ hint: { engine: 'tfjs' }, features: CAPABLE }), { engine: 'tfjs', mode: 'start' });
  assert.deepEqual(earlyEngine({ hint: null, engines: ['tfjs'], features: CAPABLE }), { engine: 'tfjs', mode: 'start' });
  assert.deepEqual(earlyEngine({ hint: null, features: CAPABLE }), { engine: 'litert', mode: 'prefetch' });
  assert.equal(earlyEngine({ hint: null, features: NO_THREADS }), null, 'without threads the manifest decides');
  assert.equal(earlyEngine({ hint: null, features: { ...CAPABLE, relaxedSimd: false } }), null);
  assert.equal(earlyEngine({ hint: null, litert: 'off', features: CAPABLE }), null);
  assert.equal(earlyEngine({ hint: null, engines: ['tfjs', 'cpu'], features: CAPABLE }), null);
  assert.equal(earlyEngine({ hint: null, variants: ['uint8', 'float32'], features: CAPABLE }), null, 'TF.js variants only');
  assert.deepEqual(earlyEngine({ hint: null, variants: ['uint8', 'tflite-int8'], features: CAPABLE }), { engine: 'litert', mode: 'prefetch' });
  assert.equal(earlyEngine({ hint: null, backends: ['webgl', 'cpu'], features: CAPABLE }), null, 'no LiteRT.js backend allowed');
  // a remembered engine the options now exclude is not loaded
  assert.equal(earlyEngine({ hint: { engine: 'litert' }, litert: 'off', features: NO_THREADS }), null);
  assert.deepEqual(earlyEngine({ hint: { engine: 'litert' }, engines: ['tfjs'], features: CAPABLE }), { engine: 'tfjs', mode: 'start' });
});

test('engines: a prefetch runs once, never rejects, and starts nothing; injected engines have none', async () => {
  let calls = 0;
  const engines = new Engines({ vendor: 'http://x/vendor/', features: CAPABLE });
  engines.prefetchers.litert = async () => {
    calls += 1;
    throw new Error('HTTP 404');
  };
  const a = await engines.prefetch('litert');
  const b = await engines.prefetch('litert');
  assert.equal(calls, 1);
  assert.deepEqual(a, { ok: false, bytes: 0, error: 'HTTP 404' });
  assert.equal(a, b);
  assert.equal(engines.loaded().size, 0, 'a prefetch is not a started engine');
  assert.equal(engines.prefetch('tfjs'), null);
  const fake = new Engines({ vendor: 'http://x/vendor/', features: CAPABLE, factories: { litert: () => ({ init() {} }) } });
  assert.equal(fake.prefetch('litert'), null);
});

test('upgrade: on a GPU machine every hardware path is measured, cheapest compile first', () => {
  const cs = listCandidates(MANIFEST, { backends: engineBackends(NVIDIA, CAPABLE), gpu: NVIDIA });
  const plan = upgradePlan({ candidates: cs, current: { engine: 'tfjs', backend: 'wasm', variant: 'uint8' }, features: CAPABLE, currentMs: 40 });
  assert.equal(plan.go, true);
  assert.deepEqual(plan.queue.map((g) => `${g.engine}/${g.backend}`), ['litert/wasm', 'tfjs/webgpu', 'litert/webgpu', 'tfjs/webgl']);
  assert.deepEqual(plan.queue[0].variants, ['tflite-int8', 'tflite-float32'], 'LiteRT.js int8 first');
  // measured compile costs replace the estimates (a warm driver cache makes webgl cheap)
  const warm = upgradePlan({
    candidates: cs, current: { engine: 'tfjs', backend: 'wasm', variant: 'uint8' }, features: CAPABLE, currentMs: 40,
    compileMs: { 'tfjs/webgl': 10 },
  });
  assert.deepEqual(warm.queue.slice(0, 2).map((g) => `${g.engine}/${g.backend}`), ['litert/wasm', 'tfjs/webgl']);
});

test('upgrade: SwiftShader is never measured; LiteRT.js wasm needs isolation; the download gate', () => {
  const cs = listCandidates(MANIFEST, { backends: engineBackends(SWIFTSHADER, CAPABLE), gpu: SWIFTSHADER });
  const current = { engine: 'tfjs', backend: 'wasm', variant: 'uint8' };
  const plan = upgradePlan({ candidates: cs, current, features: CAPABLE, currentMs: 40 });
  assert.deepEqual(plan.queue.map((g) => `${g.engine}/${g.backend}`), ['litert/wasm']);
  assert.ok(plan.skipped.some((s) => s.backend === 'webgl' && /software GPU/.test(s.reason)));
  const isolatedNot = upgradePlan({ candidates: cs, current, features: { ...CAPABLE, crossOriginIsolated: false, threads: false }, currentMs: 40 });
  assert.equal(isolatedNot.go, false);
  assert.match(isolatedNot.reason, /crossOriginIsolated/);
  const fast = upgradePlan({ candidates: cs, current, features: CAPABLE, currentMs: 1.5 });
  assert.equal(fast.go, false);
  assert.match(fast.reason, /1\.5 ms \(< 10 ms\)/);
  const forced = upgradePlan({ candidates: cs, current, features: CAPABLE, currentMs: 1.5, mode: 'force' });
  assert.deepEqual(forced.queue.map((g) => g.engine), ['litert']);
  const off = upgradePlan({ candidates: cs, current, features: CAPABLE, currentMs: 40, mode: 'off' });
  assert.equal(off.go, false);
  // failed candidates are not measured again
  const failed = new Set(['litert/wasm/tflite-int8']);
  assert.deepEqual(upgradePlan({ candidates: cs, current, features: CAPABLE, currentMs: 40, failed }).queue[0].variants, ['tflite-float32']);
});

test('upgrade: budget counts estimated compile before a group starts, always one measured', () => {
  const g = { estimateMs: 900 };
  assert.equal(fitsBudget(g, 3500, 4000, 0), true, 'nothing measured yet: measure one');
  assert.equal(fitsBudget(g, 3500, 4000, 1), false);
  assert.equal(fitsBudget(g, 3000, 4000, 2), true);
});

test('batches: defaults per path, chunks, best measured size', () => {
  assert.equal(defaultBatch({ engine: 'litert', backend: 'webgpu' }), 1);
  assert.equal(defaultBatch({ engine: 'tfjs', backend: 'webgl' }), 32);
  assert.deepEqual(batchChunks([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
  assert.equal(bestBatch({ 1: 9.1, 8: 7.9, 32: 8.2 }), 8);
  assert.equal(bestBatch({ 1: 5, 8: 5 }), 1);
});
