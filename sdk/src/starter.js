/**
 * Carrying out the start policy (start.js decides the order; this runs it on a live runtime):
 * each candidate in turn gets its variant's files (fetched once per engine and variant; the
 * engine's runtime comes down beside them) and is built and warmed up until one answers. Bad
 * files move to the same engine and backend's next variant before any other engine. A remembered
 * GPU path first answers on the same engine's CPU path and is promoted in idle time (upgrader.js
 * promoteRemembered). Functions of the runtime (`rt`) plus the pure parts node --test covers.
 * @module starter
 */

import { GPU_BACKENDS } from './candidates.js';
import { LoadError } from './errors.js';
import { buildArtifacts, loadVariantFiles } from './loader.js';
import { candidateKey } from './selection.js';
import { isMeasured, startOrder } from './start.js';

/** An empty file report. */
export function noFiles() {
  return { fromCache: 0, fromNetwork: 0, bytesFetched: 0, ms: 0, evicted: [] };
}

/** Two file reports added up. */
export function sumFiles(a, b) {
  return {
    fromCache: a.fromCache + b.fromCache, fromNetwork: a.fromNetwork + b.fromNetwork,
    bytesFetched: a.bytesFetched + b.bytesFetched, ms: a.ms + b.ms, evicted: [...a.evicted, ...b.evicted],
  };
}

/**
 * What answers first for a remembered choice: a measured GPU path answers only after compiling
 * its shaders (0.3-1 s on an H200, seconds on WebGL), so the same engine's CPU path answers first
 * (same runtime, nothing more to download; the remembered variant when it has one) and the GPU
 * path is promoted in idle time.
 * @param {import('./selection.js').Candidate & {measured?: boolean} | null} remembered
 * @param {import('./candidates.js').RichCandidate[]} candidates
 * @returns {{first: object | null, promote: import('./selection.js').Candidate | null}}
 */
export function firstForRemembered(remembered, candidates) {
  if (remembered && isMeasured(remembered) && GPU_BACKENDS.includes(remembered.backend)) {
    const cpu = candidates.filter((c) => c.engine === remembered.engine && !c.gpu);
    const pick = cpu.find((c) => c.variant === remembered.variant) || cpu[0];
    if (pick) return { first: pick, promote: { engine: remembered.engine, backend: remembered.backend, variant: remembered.variant } };
  }
  return { first: remembered || null, promote: null };
}

/**
 * Put the candidates of `failed`'s engine and backend first (its next variant), keeping order.
 * @param {object[]} order @param {import('./selection.js').Candidate} failed @returns {object[]}
 */
export function sameBackendFirst(order, failed) {
  const same = order.filter((x) => x.engine === failed.engine && x.backend === failed.backend);
  return [...same, ...order.filter((x) => !same.includes(x))];
}

/**
 * The start policy's order, tried until one candidate answers its warm-up. A remembered choice
 * that finished measuring skips the upgrade; one from an unfinished visit still gets it.
 * @param {any} rt the runtime
 * @param {object | null} remembered
 * @param {() => Promise<void>} waitEarlyEngine resolves when an engine started before the manifest is up
 * @returns {Promise<object>} the file report
 */
export async function start(rt, remembered, waitEarlyEngine) {
  const t0 = now();
  let files = noFiles();
  const results = [];
  const { first, promote } = firstForRemembered(remembered, rt.candidates);
  rt._promote = promote;
  let order = startOrder(rt.candidates, {
    remembered: first, loaded: rt._loadedRuntimes(), compileMs: rt.compileMs,
  });
  const artifactsMemo = new Map();
  while (order.length) {
    const c = order.shift();
    if (rt._isFailed(c)) continue;
    const candidate = { engine: c.engine, backend: c.backend, variant: c.variant };
    const memoKey = `${c.engine}/${c.variant}`;
    let artifacts = artifactsMemo.get(memoKey);
    // The engine's runtime comes down while the model's files do.
    rt.engines.get(c.engine).catch(() => {});
    try {
      if (!artifacts) {
        const got = await rt._files(c.variant, c.engine);
        artifacts = got.artifacts;
        artifactsMemo.set(memoKey, artifacts);
        files = sumFiles(files, got.report);
      }
    } catch (err) {
      rt.failed.add(`${c.engine}//${c.variant}`);
      rt._fallback(candidate, err, 'load');
      // Bad files: the same engine and backend's next variant (uint8 -> float16 -> float32)
      // is the fallback, before any other engine.
      order = sameBackendFirst(order, c);
      continue;
    }
    try {
      if (c.engine === 'tfjs') await waitEarlyEngine();
      const r = await rt._activate(candidate, artifacts);
      results.push({ candidate, ok: true, ms: r.warmupMs, runs: 1, warmupMs: r.warmupMs, loadMs: r.loadMs });
      break;
    } catch (err) {
      rt._markFailed(candidate, err);
      results.push({ candidate, ok: false, error: String(err && err.message ? err.message : err) });
      rt._fallback(candidate, err, 'load');
    }
  }
  if (!rt.current) {
    throw new LoadError(`no variant could be loaded: ${rt.fallbacks.map((f) => `${f.from}: ${f.reason}`).join('; ')}`, 'no-variant');
  }
  const fromMemory = remembered && candidateKey(first) === candidateKey(rt.current);
  rt.selection = { source: fromMemory ? 'remembered' : 'start', results, ms: now() - t0 };
  if (fromMemory && rt._promote) {
    rt.upgrade = { state: 'pending', reason: `answering on ${candidateKey(rt.current)} until the remembered ${candidateKey(rt._promote)} has compiled` };
  } else if (fromMemory && isMeasured(remembered)) {
    rt.upgrade = { state: 'remembered', reason: `measured fastest on this device and model version before (${candidateKey(remembered)})` };
    rt._upgradePromise = Promise.resolve(rt.upgrade);
  }
  return files;
}

/**
 * Fetch + verify + assemble one variant's files.
 * @param {any} rt the runtime @param {string} variantName @param {string} engine
 * @returns {Promise<{artifacts: object, report: object}>}
 */
export async function loadFiles(rt, variantName, engine) {
  const variant = rt.manifest.variants.find((v) => v.name === variantName && (v.engine || 'tfjs') === engine);
  if (!variant) throw new LoadError(`manifest has no ${engine} variant ${variantName}`, 'manifest');
  let report;
  try {
    report = await loadVariantFiles(variant, { server: rt.server, fetch: rt.fetch, cache: rt.cache, progress: rt.progress });
  } catch (err) {
    rt.progress.abandon(variantName);
    throw err;
  }
  const artifacts = buildArtifacts(variant, report.files);
  report.files = null; // the artifacts hold the bytes now; let the map go
  return { artifacts, report };
}

function now() {
  return performance.now();
}
