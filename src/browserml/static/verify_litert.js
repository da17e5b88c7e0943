// Page module for `browserml verify`: runs a TFLite variant in real LiteRT.js (wasm, threads when
// the page is crossOriginIsolated) on the images Python sends, batch 1 as a browser would, and
// returns the outputs. Tensors are deleted after every call.
import { loadLiteRt, loadAndCompile, Tensor } from '/vendor/@litertjs/core/dist/index.js';

let runtime = null;

// Python sends uint8 pixels, or float32 values (dtype 'float32') for models fed another range.
function decodeBase64(b64, dtype) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return dtype === 'float32' ? new Float32Array(out.buffer) : out;
}

window.browsermlVerifyLitert = async ({ variant, shape, batches, dtype }) => {
  const threads = self.crossOriginIsolated === true;
  runtime = runtime || loadLiteRt('/vendor/@litertjs/core/wasm/', { threads });
  await runtime;
  const model = await loadAndCompile(`/model/${variant}/model.tflite`, {
    accelerator: 'wasm',
    cpuOptions: { numThreads: threads ? Math.min(navigator.hardwareConcurrency || 1, 4) : 1 },
  });
  const size = shape.reduce((a, b) => a * b, 1);
  const outputs = [];
  try {
    for (const b64 of batches) {
      const pixels = decodeBase64(b64, dtype);
      for (let offset = 0; offset < pixels.length; offset += size) {
        const input = new Tensor(Float32Array.from(pixels.subarray(offset, offset + size)), [1, ...shape]);
        const results = await model.run([input]);
        input.delete();
        outputs.push(Array.from(results[0].toTypedArray()));
        for (const r of results) r.delete();
      }
    }
  } finally {
    model.delete();
  }
  return { backend: threads ? 'wasm-threads' : 'wasm', outputs };
};
window.browsermlLitertReady = true;
