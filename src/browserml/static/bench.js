// Page module for `browserml bench`: times one (engine, backend, variant, batch) configuration
// on random pixels in a fresh page and reports what ran (threads, SIMD, adapter strings).
// Python owns the statistics and the ratios; this file only measures.
/* global tf */
import { loadLiteRt, loadAndCompile, Tensor } from '/vendor/@litertjs/core/dist/index.js';
import { wasmFeatures } from '/sdk/device.js';
import { registerBrowserMLLayers } from '/sdk/engines/tfjs-layers.js';

const WASM_DIR = '/vendor/@tensorflow/tfjs-backend-wasm/dist/';

registerBrowserMLLayers(tf); // the layers Keras models need that tfjs-layers lacks, as the SDK

function randomPixels(count) {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(Math.random() * 256);
  return out;
}

// What ran it: the SDK's own wasm probes (threads, SIMD, relaxed SIMD, int8 dot product) and the
// WebGL / WebGPU adapter strings.
async function environmentFacts() {
  const wasm = wasmFeatures();
  let webgl = null;
  try {
    const gl = document.createElement('canvas').getContext('webgl2');
    const info = gl && gl.getExtension('WEBGL_debug_renderer_info');
    webgl = gl ? (info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER)) : null;
  } catch (e) { webgl = null; }
  let webgpu = null;
  try {
    const adapter = navigator.gpu && (await navigator.gpu.requestAdapter());
    webgpu = adapter ? JSON.stringify(adapter.info || {}) : null;
  } catch (e) { webgpu = null; }
  return {
    crossOriginIsolated: wasm.crossOriginIsolated,
    simd: wasm.simd, relaxedSimd: wasm.relaxedSimd, int8Dot: wasm.int8Dot, threads: wasm.threads,
    hardwareConcurrency: navigator.hardwareConcurrency,
    userAgent: navigator.userAgent, webgl, webgpu,
  };
}

// At least n timed calls and at least minMs of timing (fast configurations get more samples, so
// their median is as steady as a slow one's), cut short once budgetMs is spent (software WebGL
// can take a second a call) but never fewer than 5.
async function timeLoop(run, n, budgetMs, minMs = 0) {
  const times = [];
  const start = performance.now();
  for (;;) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
    const elapsed = performance.now() - start;
    if (times.length >= 5 && elapsed > budgetMs) break;
    if (times.length >= n && elapsed >= minMs) break;
  }
  return times;
}

async function benchTfjs({ variant, backend, batch, n, shape, threads, budgetMs, minMs }) {
  if (backend === 'wasm') {
    tf.wasm.setWasmPaths(WASM_DIR);
    if (threads) tf.wasm.setThreadsCount(threads);
  }
  const t0 = performance.now();
  if (backend !== 'default' && !(await tf.setBackend(backend))) throw new Error(`backend ${backend} unavailable`);
  await tf.ready();
  const model = await tf.loadLayersModel(`/model/${variant}/model.json`);
  const loadMs = performance.now() - t0;
  const x = tf.tensor(randomPixels(batch * shape.reduce((a, b) => a * b, 1)), [batch, ...shape]);
  const predict = async () => { const y = model.predict(x); await y.data(); y.dispose(); };
  const w0 = performance.now();
  await predict();
  const warmupMs = performance.now() - w0;
  const before = tf.memory().numTensors;
  const times = await timeLoop(predict, n, budgetMs, minMs);
  const after = tf.memory().numTensors;
  x.dispose();
  model.dispose();
  return {
    loadMs, warmupMs, times, backend: tf.getBackend(),
    threads: tf.getBackend() === 'wasm' ? tf.wasm.getThreadsCount() : null,
    numTensorsBefore: before, numTensorsAfter: after,
  };
}

async function benchLitert({ variant, batch, n, shape, threads, budgetMs, minMs }) {
  const t0 = performance.now();
  const useThreads = self.crossOriginIsolated === true && threads !== 1;
  await loadLiteRt('/vendor/@litertjs/core/wasm/', { threads: useThreads });
  const model = await loadAndCompile(`/model/${variant}/model.tflite`, {
    accelerator: 'wasm', cpuOptions: { numThreads: useThreads ? (threads || navigator.hardwareConcurrency || 1) : 1 },
  });
  const loadMs = performance.now() - t0;
  const size = shape.reduce((a, b) => a * b, 1);
  const pixels = randomPixels(size);
  // The TFLite export is pinned to batch 1, as a browser classifies; batch B runs B calls.
  const predict = async () => {
    for (let b = 0; b < batch; b++) {
      const input = new Tensor(pixels, [1, ...shape]);
      const out = await model.run([input]);
      input.delete();
      out[0].toTypedArray();
      for (const t of out) t.delete();
    }
  };
  const w0 = performance.now();
  await predict();
  const warmupMs = performance.now() - w0;
  const times = await timeLoop(predict, n, budgetMs, minMs);
  model.delete();
  return { loadMs, warmupMs, times, backend: 'wasm', threads: useThreads ? (threads || navigator.hardwareConcurrency) : 1 };
}

// The peer: ONNX Runtime Web (wasm, threads when crossOriginIsolated), loaded only when asked.
async function benchOrt({ variant, batch, n, shape, budgetMs, minMs }) {
  const t0 = performance.now();
  const ort = await import('/vendor/onnxruntime-web/dist/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = '/vendor/onnxruntime-web/dist/';
  ort.env.wasm.numThreads = self.crossOriginIsolated ? (navigator.hardwareConcurrency || 1) : 1;
  const session = await ort.InferenceSession.create(`/model/${variant}/model.onnx`, { executionProviders: ['wasm'] });
  const loadMs = performance.now() - t0;
  const size = shape.reduce((a, b) => a * b, 1);
  const input = new ort.Tensor('float32', randomPixels(size), [1, ...shape]);
  const predict = async () => {
    for (let b = 0; b < batch; b++) {
      const out = await session.run({ [session.inputNames[0]]: input });
      for (const name of Object.keys(out)) { await out[name].getData(); out[name].dispose(); }
    }
  };
  const w0 = performance.now();
  await predict();
  const warmupMs = performance.now() - w0;
  const times = await timeLoop(predict, n, budgetMs, minMs);
  await session.release();
  return { loadMs, warmupMs, times, backend: 'wasm', threads: ort.env.wasm.numThreads };
}

window.browsermlBench = async (config) => {
  const env = await environmentFacts();
  const run = { litert: benchLitert, ort: benchOrt }[config.engine] || benchTfjs;
  const result = await run(config);
  return { ...result, env };
};
window.browsermlBenchReady = true;
