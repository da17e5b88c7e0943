import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canaryBucket, pickManifest } from '../src/canary.js';
import { blobUrl, manifestUrl } from '../src/loader.js';

const doc = { name: 'digits', channel: 'stable', version: 1, variants: [], rollout: { version: 2, percent: 30, manifest: { name: 'digits', channel: 'stable', version: 2, variants: [] } } };

test('clients inside the rollout percentage get its manifest, the others the base', async () => {
  let canary = 0;
  for (let i = 0; i < 200; i += 1) {
    const id = `client-${i}`;
    const m = await pickManifest(doc, id);
    const bucket = await canaryBucket('digits', 'stable', id);
    assert.ok(bucket >= 0 && bucket < 100);
    assert.equal(m.version, bucket < 30 ? 2 : 1);
    assert.equal(m.rollout, undefined);
    if (m.version === 2) canary += 1;
  }
  assert.ok(canary > 20 && canary < 100, `${canary} of 200 in a 30 % canary`);
  assert.equal((await pickManifest(doc, undefined)).version, 1, 'no client id: the base version');
  const plain = { name: 'digits', version: 3 };
  assert.equal(await pickManifest(plain, 'x'), plain);
});

test('manifest and blob URLs keep a static base path', () => {
  assert.equal(manifestUrl('https://cdn.example/models', 'digits', 'stable'), 'https://cdn.example/models/v1/models/digits/channels/stable.json');
  assert.equal(manifestUrl('http://127.0.0.1:8000', 'digits', 'canary'), 'http://127.0.0.1:8000/v1/models/digits/channels/canary.json');
  const file = { url: '/v1/blobs/ab', sha256: 'ab' };
  assert.equal(blobUrl('https://cdn.example/models/', file), 'https://cdn.example/models/v1/blobs/ab');
  assert.equal(blobUrl('https://cdn.example', { sha256: 'cd' }), 'https://cdn.example/v1/blobs/cd');
  assert.equal(blobUrl('https://cdn.example', { url: 'https://other.example/b', sha256: 'cd' }), 'https://other.example/b');
});
