/**
 * Offline support for the demo page (scope /demo/).
 *
 * The SDK already keeps the manifest and every model file in the Cache API; what a reload needs
 * besides is the page itself, the SDK modules and the TF.js runtime. Those are precached at install
 * and refreshed network-first for the page and SDK (so a deploy shows up on the next visit) and
 * cache-first for /vendor/ (exact npm versions; they change only with package-lock.json).
 * Lookups ignore Vary: the server varies on Origin (CORS), which module-script requests send and
 * the install-time precache requests do not, so an exact match would miss every module offline.
 * Model API calls (/v1/) are left alone: the SDK's own cache handles them and must see real
 * network failures to fall back.
 */

const CACHE = 'browserml-demo-v1';
const SDK = ['browserml.js', 'runtime.js', 'loader.js', 'cache.js', 'selection.js', 'memory.js', 'preprocess.js',
  'stats.js', 'telemetry.js', 'device.js', 'errors.js', 'worker.js', 'progress.js', 'engines/tfjs.js', 'sinks/http.js'].map((f) => `/sdk/${f}`);
const VENDOR = [
  '@tensorflow/tfjs/dist/tf.min.js',
  '@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js',
  '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm',
  '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm',
  '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm',
].map((f) => `/vendor/${f}`);
const SHELL = ['./', './demo.js', './demo.css'];

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // One by one: a missing optional file must not fail the whole install.
    await Promise.all([...SHELL, ...SDK, ...VENDOR].map((u) => cache.add(u).catch(() => null)));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== location.origin || url.pathname.startsWith('/v1/')) return;
  if (url.pathname.startsWith('/vendor/')) {
    event.respondWith(cacheFirst(event.request));
  } else if (url.pathname.startsWith('/sdk/') || url.pathname.startsWith('/demo')) {
    event.respondWith(networkFirst(event.request));
  }
});

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request, { ignoreSearch: true, ignoreVary: true });
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok) cache.put(request, response.clone());
  return response;
}

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) cache.put(request, response.clone());
    return response;
  } catch (err) {
    const hit = await cache.match(request, { ignoreSearch: true, ignoreVary: true });
    if (hit) return hit;
    throw err;
  }
}
