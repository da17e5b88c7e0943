// The SDK's own TF.js layers (engines/tfjs-layers.js), loaded from a model.json the way the
// engine loads one, in real TF.js (Node, pure-JS cpu backend).
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { registerBrowserMLLayers } from '../src/engines/tfjs-layers.js';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');

function resizeModel(config) {
  const topology = {
    class_name: 'Sequential',
    config: {
      name: 'resize',
      layers: [
        { class_name: 'InputLayer', config: { batch_input_shape: [null, 2, 2, 1], dtype: 'float32', name: 'pixels' } },
        { class_name: 'BrowserMLResize', config: { name: 'up', ...config } },
      ],
    },
    keras_version: '2.15.0',
    backend: 'tensorflow',
  };
  return tf.loadLayersModel(tf.io.fromMemory({ modelTopology: topology, weightSpecs: [], weightData: new ArrayBuffer(0) }));
}

test('registration is idempotent and makes BrowserMLResize loadable', async () => {
  registerBrowserMLLayers(tf);
  registerBrowserMLLayers(tf);
  const model = await resizeModel({ height: 4, width: 4, interpolation: 'bilinear' });
  assert.deepEqual(model.outputs[0].shape, [null, 4, 4, 1]);
  model.dispose();
});

test('bilinear resize uses half-pixel centres, as TensorFlow (Keras 3) does', async () => {
  registerBrowserMLLayers(tf);
  const model = await resizeModel({ height: 4, width: 4, interpolation: 'bilinear' });
  // input [[0, 1], [2, 3]]: along each axis the 4 samples sit at 0, 0.25, 0.75, 1 of the way.
  const y = model.predict(tf.tensor4d([0, 1, 2, 3], [1, 2, 2, 1]));
  const steps = [0, 0.25, 0.75, 1];
  const want = steps.flatMap((r) => steps.map((c) => 2 * r + c));
  const got = Array.from(await y.data());
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-6, `${i}: ${v} vs ${want[i]}`));
  y.dispose();
  model.dispose();
});

test('nearest resize repeats pixels; an unknown interpolation is refused at load', async () => {
  registerBrowserMLLayers(tf);
  const model = await resizeModel({ height: 4, width: 4, interpolation: 'nearest' });
  const y = model.predict(tf.tensor4d([0, 1, 2, 3], [1, 2, 2, 1]));
  assert.deepEqual(Array.from(await y.data()), [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
  y.dispose();
  model.dispose();
  await assert.rejects(resizeModel({ height: 4, width: 4, interpolation: 'bicubic' }), /unsupported interpolation bicubic/);
});
