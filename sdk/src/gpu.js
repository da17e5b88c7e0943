/**
 * What GPU this browser really hands out: the WebGPU adapter (vendor, architecture,
 * `isFallbackAdapter`) and the WebGL renderer string, and whether either is a *software* GPU.
 *
 * Why: on a machine without a usable GPU, Chromium still offers WebGL and WebGPU, on SwiftShader
 * (a CPU rasteriser). They work, but a first prediction there costs seconds (5.5 s warm-up for a
 * MobileNetV2 on the software WebGPU adapter, 0.3-0.9 s a prediction on SwiftShader WebGL) where
 * wasm answers in tens of ms. The start policy never puts a software GPU on the path to the first
 * answer, and the upgrade policy does not spend idle time measuring one (see candidates.js).
 * Names seen: SwiftShader (Chromium), llvmpipe / softpipe (Mesa), WARP and "Microsoft Basic Render
 * Driver" (Windows).
 *
 * Everything is cheap (one adapter request, one 1x1 context) and read once per realm.
 * @module gpu
 */

/** Renderer / adapter strings of software rasterisers. */
export const SOFTWARE_GPU = /swiftshader|llvmpipe|softpipe|lavapipe|\bwarp\b|basic render|software/i;

/**
 * Whether a WebGL renderer string (UNMASKED_RENDERER_WEBGL, or RENDERER) names a software GPU.
 * @param {string | null | undefined} renderer
 * @returns {boolean}
 */
export function isSoftwareRenderer(renderer) {
  return Boolean(renderer) && SOFTWARE_GPU.test(String(renderer));
}

/**
 * Plain facts of a WebGPU adapter and whether it is a software one: `isFallbackAdapter` (the
 * spec's flag; Chromium sets it on SwiftShader) or a software name in vendor/architecture/description.
 * @param {any} adapter a GPUAdapter (or a fake with the same fields)
 * @returns {{vendor: string, architecture: string, device: string, description: string,
 *   isFallbackAdapter: boolean, software: boolean}}
 */
export function adapterFacts(adapter) {
  const info = (adapter && adapter.info) || {};
  const fallback = Boolean((adapter && adapter.isFallbackAdapter) || info.isFallbackAdapter);
  const facts = {
    vendor: String(info.vendor || ''),
    architecture: String(info.architecture || ''),
    device: String(info.device || ''),
    description: String(info.description || ''),
    isFallbackAdapter: fallback,
  };
  const named = [facts.vendor, facts.architecture, facts.description].join(' ');
  return { ...facts, software: fallback || isSoftwareRenderer(named) };
}

/**
 * @typedef {{webgpu: null | ReturnType<typeof adapterFacts>, webgpuError?: string,
 *   webgl: null | {renderer: string, vendor: string, software: boolean}}} GpuFacts
 */

/**
 * Ask the browser once: a WebGPU adapter (high-performance) and a WebGL context's renderer.
 * Either is null when the browser offers none. Never throws.
 * @param {any} [g] global scope (injectable for tests: `{navigator: {gpu: fake}}`)
 * @returns {Promise<GpuFacts>}
 */
export async function gpuFacts(g = globalThis) {
  const out = { webgpu: null, webgl: webglFacts(g) };
  const gpu = g.navigator && g.navigator.gpu;
  if (gpu && typeof gpu.requestAdapter === 'function') {
    try {
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (adapter) out.webgpu = adapterFacts(adapter);
      else out.webgpuError = 'no WebGPU adapter';
    } catch (err) {
      out.webgpuError = String(err && err.message ? err.message : err);
    }
  } else {
    out.webgpuError = 'no navigator.gpu';
  }
  return out;
}

const cached = new WeakMap();

/** gpuFacts, asked once per global scope. @param {any} [g] @returns {Promise<GpuFacts>} */
export function gpuFactsOnce(g = globalThis) {
  if (!cached.has(g)) cached.set(g, gpuFacts(g));
  return cached.get(g);
}

/**
 * The WebGL renderer (unmasked when the browser allows it), or null without WebGL. The context
 * is given back at once (WEBGL_lose_context) so it does not count against the browser's limit.
 * @param {any} g
 */
export function webglFacts(g = globalThis) {
  let canvas = null;
  try {
    if (typeof g.OffscreenCanvas === 'function') canvas = new g.OffscreenCanvas(1, 1);
    else if (g.document) canvas = g.document.createElement('canvas');
  } catch {
    return null;
  }
  if (!canvas) return null;
  let gl = null;
  try {
    gl = canvas.getContext('webgl2') || canvas.getContext('webgl');
  } catch {
    return null;
  }
  if (!gl) return null;
  try {
    const ext = gl.getExtension('WEBGL_debug_renderer_info');
    const renderer = String(gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER) || '');
    const vendor = String(gl.getParameter(ext ? ext.UNMASKED_VENDOR_WEBGL : gl.VENDOR) || '');
    return { renderer, vendor, software: isSoftwareRenderer(renderer) };
  } catch {
    return { renderer: '', vendor: '', software: false };
  } finally {
    try {
      const lose = gl.getExtension('WEBGL_lose_context');
      if (lose) lose.loseContext();
    } catch { /* nothing to give back */ }
  }
}
