// The device probes: relaxed-SIMD int8 dot-product semantics, as XNNPACK classifies them.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dotKind, int8DotProduct, wasmFeatures } from '../src/device.js';

test('dotKind reads the lanes of XNNPACK\'s two checks', () => {
  assert.equal(dotKind([128, 128, 128, 128, -65536, -98048, -98048, -130560]), 'usdot', 'x86 AVX-VNNI (vpdpbusd)');
  assert.equal(dotKind([-128, -128, -128, -128, 65536, 33024, 33024, 512]), 'sdot', 'Arm dot product');
  assert.equal(dotKind([128, 128, 128, 128, -65536, -65536, -65536, -65536]), 'none', 'x86 pmaddubsw saturates');
  assert.equal(dotKind([0, 0, 0, 0, 0, 0, 0, 0]), 'none');
});

test('without relaxed SIMD or WebAssembly there is no int8 dot product to report', () => {
  assert.equal(int8DotProduct({}), null);
  assert.equal(int8DotProduct({ WebAssembly: { validate: () => false } }), null);
  assert.equal(wasmFeatures({}).int8Dot, null);
});

test('the probe module really runs where relaxed SIMD is on', () => {
  const url = new URL('../src/device.js', import.meta.url).href;
  const out = execFileSync(process.execPath, ['--experimental-wasm-relaxed-simd', '--input-type=module', '-e',
    `import { int8DotProduct } from ${JSON.stringify(url)}; console.log(String(int8DotProduct()));`], { encoding: 'utf8' });
  assert.ok(['usdot', 'sdot', 'none'].includes(out.trim()), `got ${out.trim()}`);
});
