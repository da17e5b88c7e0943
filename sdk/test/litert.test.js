// Pure logic of the LiteRT.js engine and the upgrade decision: which variants, whether to try,
// whether to switch, the module rewrite, thread counts, TFLite artifacts, and the TF.js-free
// preprocessing (checked against a direct computation of tf.image.resizeBilinear + luma).
import test from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_LITERT_MIN_MS, litertOrder, litertPlan, shouldSwitch } from '../src/selection.js';
import { glueFile, litertThreads, rewriteCoreModule } from '../src/engines/litert.js';
import { buildArtifacts, isTflite } from '../src/loader.js';
import { toInputArray } from '../src/preprocess.js';
import { wasmFeatures } from '../src/device.js';
import { LoadError } from '../src/errors.js';

const V = [
  { name: 'uint8', engine: 'tfjs' }, { name: 'tflite-float32', engine: 'litert' },
  { name: 'tflite-float16', engine: 'litert' }, { name: 'tflite-int8', engine: 'litert' },
  { name: 'tflite-dyn', engine: 'litert' }, { name: 'tflite-bad', engine: 'litert', offered: false },
];
const CAPABLE = { wasm: true, simd: true, relaxedSimd: true, threads: true, crossOriginIsolated: true, cores: 2 };

test('litert variants: int8 first, then float16, float32, unknown last; offered and allowed only', () => {
  assert.deepEqual(litertOrder(V), ['tflite-int8', 'tflite-float16', 'tflite-float32', 'tflite-dyn']);
  assert.deepEqual(litertOrder(V, ['uint8', 'tflite-float32']), ['tflite-float32']);
  assert.deepEqual(litertOrder(V.slice(0, 1)), []);
});

test('plan: auto mode tries LiteRT.js only on a capable device for a model TF.js finds slow', () => {
  const base = { features: CAPABLE, variants: ['tflite-int8'], tfjsMs: 27 };
  assert.equal(litertPlan(base).go, true);
  assert.match(litertPlan({ ...base, tfjsMs: 1.23 }).reason, /1\.2 ms \(< 10 ms\)/);
  assert.equal(litertPlan({ ...base, tfjsMs: DEFAULT_LITERT_MIN_MS }).go, true);
  assert.equal(litertPlan({ ...base, tfjsMs: 3, minMs: 0 }).go, true);
  assert.equal(litertPlan({ ...base, tfjsMs: NaN }).go, false);
  assert.match(litertPlan({ ...base, features: { ...CAPABLE, crossOriginIsolated: false, threads: false } }).reason, /crossOriginIsolated/);
  assert.match(litertPlan({ ...base, features: { ...CAPABLE, relaxedSimd: false } }).reason, /relaxed SIMD/);
  assert.match(litertPlan({ ...base, features: { ...CAPABLE, relaxedSimd: false, simd: false } }).reason, /no wasm SIMD/);
  assert.match(litertPlan({ ...base, variants: [] }).reason, /offers no LiteRT/);
  assert.match(litertPlan({ ...base, remembered: { litert: 'slower' } }).reason, /remembered.*slower/);
});

test('plan: force skips the device, size and remembered rules; off never loads', () => {
  const slowDevice = { ...CAPABLE, crossOriginIsolated: false, threads: false, relaxedSimd: false };
  assert.equal(litertPlan({ mode: 'force', features: slowDevice, variants: ['x'], tfjsMs: 0.1, remembered: { litert: 'slower' } }).go, true);
  assert.equal(litertPlan({ mode: 'force', features: { ...slowDevice, wasm: false }, variants: ['x'], tfjsMs: 50 }).go, false);
  assert.equal(litertPlan({ mode: 'off', features: CAPABLE, variants: ['x'], tfjsMs: 50 }).go, false);
});

test('switch only when strictly faster, unless forced', () => {
  assert.equal(shouldSwitch(3.5, 26.8), true);
  assert.equal(shouldSwitch(5, 5), false);
  assert.equal(shouldSwitch(9, 5), false);
  assert.equal(shouldSwitch(9, 5, true), true);
  assert.equal(shouldSwitch(NaN, 5, true), false);
});

test('the bare wasm-utils import is rewritten to the vendored URL, the source map dropped', () => {
  const src = 'var a = 1;\nimport { createWasmLib } from "@litertjs/wasm-utils";\nexport { a };\n//# sourceMappingURL=index.js.map';
  const out = rewriteCoreModule(src, 'http://h/vendor/@litertjs/wasm-utils/dist/index.js');
  assert.match(out, /from "http:\/\/h\/vendor\/@litertjs\/wasm-utils\/dist\/index\.js";/);
  assert.doesNotMatch(out, /sourceMappingURL|from "@litertjs/);
  assert.throws(() => rewriteCoreModule('export {}', 'x'), LoadError);
});

test('threads and glue file follow what LiteRT.js needs', () => {
  assert.equal(litertThreads(CAPABLE), 2);
  assert.equal(litertThreads({ ...CAPABLE, cores: 16 }), 16, 'threads from the device\'s cores');
  assert.equal(litertThreads({ ...CAPABLE, cores: 64 }), 16);
  assert.equal(litertThreads({ ...CAPABLE, cores: 16 }, 8), 8);
  assert.equal(litertThreads({ ...CAPABLE, threads: false }), 1);
  assert.equal(litertThreads({ ...CAPABLE, relaxedSimd: false }), 1);
  assert.equal(glueFile(CAPABLE, true), 'litert_wasm_threaded_internal.js');
  assert.equal(glueFile(CAPABLE, false), 'litert_wasm_internal.js');
  assert.equal(glueFile({ relaxedSimd: false }, true), 'litert_wasm_compat_internal.js');
});

test('wasm features read isolation, SAB, SIMD from the given scope', () => {
  const g = { WebAssembly, crossOriginIsolated: true, SharedArrayBuffer, navigator: { hardwareConcurrency: 6 } };
  const f = wasmFeatures(g);
  assert.equal(f.wasm && f.simd && f.threads && f.crossOriginIsolated, true);
  assert.equal(f.cores, 6);
  assert.equal(typeof f.relaxedSimd, 'boolean');
  assert.equal(wasmFeatures({ ...g, crossOriginIsolated: false }).threads, false);
  assert.equal(wasmFeatures({}).wasm, false);
});

test('TFLite artifacts: the .tflite bytes, checked for the TFL3 identifier', () => {
  const good = new Uint8Array([0x1c, 0, 0, 0, 0x54, 0x46, 0x4c, 0x33, 1, 2, 3]).buffer;
  const variant = { name: 'tflite-int8', engine: 'litert', format: 'tflite', files: [{ path: 'model.tflite', role: 'model' }] };
  const arts = buildArtifacts(variant, new Map([['model.tflite', good]]));
  assert.equal(arts.format, 'tflite');
  assert.equal(isTflite(arts.model), true);
  const html = new TextEncoder().encode('<!doctype html><p>not a model').buffer;
  assert.throws(() => buildArtifacts(variant, new Map([['model.tflite', html]])), /not a TFLite flatbuffer/);
  assert.throws(() => buildArtifacts(variant, new Map()), /no \.tflite file/);
});

/** Reference: tf.image.resizeBilinear (alignCorners false, halfPixelCenters false), per channel. */
function resizeRef(img, H, W, c) {
  const at = (y, x) => img.data[(y * img.width + x) * 4 + c];
  const out = [];
  for (let y = 0; y < H; y += 1) {
    for (let x = 0; x < W; x += 1) {
      const sy = (y * img.height) / H;
      const sx = (x * img.width) / W;
      const y0 = Math.floor(sy); const x0 = Math.floor(sx);
      const y1 = Math.min(y0 + 1, img.height - 1); const x1 = Math.min(x0 + 1, img.width - 1);
      const top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * (sx - x0);
      const bot = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * (sx - x0);
      out.push(top + (bot - top) * (sy - y0));
    }
  }
  return out;
}

test('pixels to input: same size copies RGB, resize is bilinear, one channel is BT.601 luma', () => {
  const w = 5; const h = 3;
  const data = new Uint8ClampedArray(w * h * 4).map((_, i) => (i * 37) % 256);
  const img = { width: w, height: h, data };
  const same = toInputArray(img, { height: h, width: w, channels: 3 });
  assert.deepEqual(Array.from(same.slice(0, 6)), [data[0], data[1], data[2], data[4], data[5], data[6]]);

  const spec = { height: 7, width: 4, channels: 3, value_range: [-1, 1] };
  const out = toInputArray(img, spec);
  for (let c = 0; c < 3; c += 1) {
    const ref = resizeRef(img, 7, 4, c);
    ref.forEach((v, i) => assert.ok(Math.abs(out[i * 3 + c] - (v * (2 / 255) - 1)) < 1e-5));
  }
  const gray = toInputArray(img, { height: h, width: w, channels: 1 });
  assert.equal(gray.length, w * h);
  assert.ok(Math.abs(gray[1] - (data[4] * 0.299 + data[5] * 0.587 + data[6] * 0.114)) < 1e-4);
});
