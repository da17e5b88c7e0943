#!/usr/bin/env node
// Unpack one of the real pretrained TF.js models that the npm `nsfwjs` package ships as UMD
// `.min.js` files into a plain `model.json` + `.bin` shards, ready for `browserml import`.
// Usage: node scripts/nsfwjs-model.cjs [mobilenet_v2|mobilenet_v2_mid|inception_v3] OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');

const [name = 'mobilenet_v2', out] = process.argv.slice(2);
if (!out) {
  console.error('usage: nsfwjs-model.cjs MODEL OUT_DIR');
  process.exit(2);
}
// BROWSERML_NODE_MODULES overrides where the npm packages are, as it does for the Python side.
const nodeModules = process.env.BROWSERML_NODE_MODULES || path.resolve(__dirname, '..', 'node_modules');
const dir = path.join(nodeModules, 'nsfwjs', 'dist', 'models', name);
if (!fs.existsSync(path.join(dir, 'model.min.js'))) {
  console.error(`${dir}: no such nsfwjs model (run npm ci)`);
  process.exit(1);
}
const model = require(path.join(dir, 'model.min.js'));
fs.mkdirSync(out, { recursive: true });
for (const group of model.weightsManifest) {
  for (const shard of group.paths) {
    const global = shard.replace(/-/g, '_');
    const data = require(path.join(dir, `${shard}.min.js`));
    if (typeof data !== 'string') throw new Error(`${shard}: expected base64 text (${global})`);
    fs.writeFileSync(path.join(out, shard), Buffer.from(data, 'base64'));
  }
}
fs.writeFileSync(path.join(out, 'model.json'), JSON.stringify(model));
console.log(`wrote ${out}/model.json`);
