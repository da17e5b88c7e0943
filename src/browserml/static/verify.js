// Page script for `browserml verify`: loads a TF.js model from /model/<variant>/ exactly as a
// browser would (real TF.js, real backend) and returns its outputs for the images Python sends.
// Python compares them with Keras; this file only computes.
/* global tf */
'use strict';

// Python sends uint8 pixels, or float32 values (dtype 'float32') for models fed another range.
function decodeBase64(b64, dtype) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return dtype === 'float32' ? new Float32Array(out.buffer) : out;
}

async function useBackend(name) {
  if (name === 'wasm') tf.wasm.setWasmPaths('/vendor/@tensorflow/tfjs-backend-wasm/dist/');
  if (!(await tf.setBackend(name))) throw new Error(`TF.js backend ${name} is not available`);
  await tf.ready();
  return tf.getBackend();
}

// Given a variant folder, batches of raw pixels and a shape, return the model's outputs; with
// `layerNames`, also each named layer's output for the first batch (to locate a divergence).
window.browsermlVerify = async ({ variant, backend, shape, batches, layerNames, dtype }) => {
  const used = await useBackend(backend);
  const model = await tf.loadLayersModel(`/model/${variant}/model.json`);
  const outputs = [];
  for (const b64 of batches) {
    const pixels = decodeBase64(b64, dtype);
    const n = pixels.length / shape.reduce((a, b) => a * b, 1);
    const y = tf.tidy(() => model.predict(tf.tensor(pixels, [n, ...shape], 'float32')));
    outputs.push(Array.from(await y.data()));
    y.dispose();
  }
  const layers = {};
  if (layerNames && layerNames.length) {
    const probe = tf.model({
      inputs: model.inputs,
      outputs: layerNames.map((name) => model.getLayer(name).output),
    });
    const pixels = decodeBase64(batches[0], dtype);
    const n = pixels.length / shape.reduce((a, b) => a * b, 1);
    const ys = tf.tidy(() => [].concat(probe.predict(tf.tensor(pixels, [n, ...shape], 'float32'))));
    for (let i = 0; i < layerNames.length; i++) layers[layerNames[i]] = Array.from(await ys[i].data());
    tf.dispose(ys);
  }
  model.dispose();
  return { backend: used, outputs, layers, numTensors: tf.memory().numTensors };
};
window.browsermlReady = true;
