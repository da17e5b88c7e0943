/**
 * Canary rollouts applied in the browser, from a channel document any static host can serve.
 *
 * `GET /v1/models/{model}/channels/{channel}.json` (served by `browserml serve` and written by
 * `browserml export`) is the manifest of the version every client gets, plus, during a canary,
 * `rollout: {version, percent, manifest}`. A client is in the rollout when its bucket is below
 * `percent`; the bucket is the server's (`browserml.registry.canary_bucket`): the first 8 bytes of
 * sha256("model\nchannel\nclientId"), big-endian, mod 100. So a client gets the same version from
 * every server instance and from any CDN, and stays in the canary as its percentage grows.
 * @module canary
 */

/**
 * @param {string} model @param {string} channel @param {string} clientId
 * @returns {Promise<number>} the client's bucket, 0-99
 */
export async function canaryBucket(model, channel, clientId) {
  const bytes = new TextEncoder().encode(`${model}\n${channel}\n${clientId}`);
  const digest = new DataView(await globalThis.crypto.subtle.digest('SHA-256', bytes));
  return Number(digest.getBigUint64(0, false) % 100n);
}

/**
 * Given a channel document and a client id, return the manifest this client loads: the rollout's
 * when the client's bucket is inside it, else the document itself (without `rollout`). A client
 * without an id gets the version everyone else has, as on the server.
 * @param {any} doc channel document
 * @param {string} [clientId]
 * @returns {Promise<any>} a manifest
 */
export async function pickManifest(doc, clientId) {
  if (!doc || typeof doc !== 'object' || !doc.rollout) return doc;
  const { rollout, ...base } = doc;
  if (!clientId || !rollout.manifest) return base;
  const bucket = await canaryBucket(doc.name, doc.channel, clientId);
  return bucket < rollout.percent ? rollout.manifest : base;
}
