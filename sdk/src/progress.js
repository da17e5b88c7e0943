/**
 * Load progress: what a page shows while a model arrives (a 103 MB float32 CNN takes a while).
 *
 * One `LoadProgress` per classifier turns the loader's and the runtime's hooks into plain
 * progress events (structured-cloneable, so worker mode posts them as they are):
 *
 * ```js
 * { phase: 'manifest' | 'download' | 'verify' | 'compile' | 'warmup' | 'ready',
 *   variant?, file?, source?: 'network' | 'cache', backend?, engine?,
 *   loaded, total,                    // this file's bytes (download / verify)
 *   overall: { loaded, total, files, filesDone },   // every file of the variants being loaded
 *   fraction }                        // overall.loaded / overall.total, 1 once ready
 * ```
 *
 * Network bodies are read with a stream reader, so a download reports whenever another
 * `stepBytes` (256 KiB) of the overall bytes arrived (files download in parallel: counting per
 * file would let the overall jump by files x step) and when each file ends; a cache hit reports
 * the whole file at once.
 * A variant that fails (and is fallen back from) gives back the bytes it will never receive, so
 * `overall` still ends at 100 %. A listener that throws never breaks a load.
 * @module progress
 */

export const STEP_BYTES = 256 * 1024;

/**
 * @typedef {{loaded: number, total: number, files: number, filesDone: number}} Overall
 * @typedef {{phase: string, variant?: string, file?: string, source?: string, backend?: string,
 *   engine?: string, loaded: number, total: number, overall: Overall, fraction: number}} ProgressEvent
 */

export class LoadProgress {
  /**
   * @param {((event: ProgressEvent) => void) | null | undefined} emit
   * @param {{stepBytes?: number}} [opts]
   */
  constructor(emit, opts = {}) {
    this._emit = typeof emit === 'function' ? emit : null;
    this.stepBytes = opts.stepBytes || STEP_BYTES;
    /** @type {Map<string, {loaded: number, total: number, reported: number, done: boolean}>} */
    this.files = new Map();
    this.overall = { loaded: 0, total: 0, files: 0, filesDone: 0 };
    /** overall.loaded at the last download event */
    this.reported = 0;
  }

  /** Whether anyone listens (the loader skips the stream reader otherwise). */
  get active() {
    return this._emit !== null;
  }

  /**
   * Announce a variant's files before they load: their bytes join the overall total.
   * @param {string} variant @param {{path: string, bytes?: number}[]} files
   */
  expect(variant, files) {
    for (const f of files) {
      const key = `${variant}/${f.path}`;
      if (this.files.has(key)) continue;
      const total = Number(f.bytes) || 0;
      this.files.set(key, { loaded: 0, total, done: false });
      this.overall.total += total;
      this.overall.files += 1;
    }
  }

  /**
   * Bytes of a file have arrived (`loaded` so far); reported every `stepBytes` overall and at
   * the file's end.
   * @param {string} variant @param {{path: string, bytes?: number}} file @param {number} loaded
   * @param {'network' | 'cache'} source
   */
  bytes(variant, file, loaded, source) {
    const entry = this._entry(variant, file);
    const delta = loaded - entry.loaded;
    entry.loaded = loaded;
    this.overall.loaded += delta;
    if (loaded > entry.total) { // more than the manifest said: integrity will refuse it
      this.overall.total += loaded - entry.total;
      entry.total = loaded;
    }
    const ended = loaded === entry.total;
    if (!ended && this.overall.loaded - this.reported < this.stepBytes) return;
    this.reported = this.overall.loaded;
    this.emit('download', { variant, file: file.path, source, loaded, total: entry.total });
  }

  /**
   * A file's sha256 and size matched: the file is done.
   * @param {string} variant @param {{path: string, bytes?: number}} file @param {'network' | 'cache'} source
   */
  verified(variant, file, source) {
    const entry = this._entry(variant, file);
    if (!entry.done) {
      entry.done = true;
      this.overall.filesDone += 1;
    }
    this.emit('verify', { variant, file: file.path, source, loaded: entry.loaded, total: entry.total });
  }

  /**
   * A variant failed: drop the bytes it will not receive from the total, so 100 % stays reachable.
   * @param {string} variant
   */
  abandon(variant) {
    for (const [key, entry] of this.files) {
      if (!key.startsWith(`${variant}/`) || entry.done) continue;
      this.overall.total -= entry.total - entry.loaded;
      entry.total = entry.loaded;
      entry.done = true;
      this.overall.filesDone += 1;
    }
  }

  /**
   * A phase without bytes: manifest, compile, warmup, ready.
   * @param {string} phase @param {object} [detail] e.g. {engine, backend, variant}
   */
  phase(phase, detail = {}) {
    this.emit(phase, { loaded: 0, total: 0, ...detail });
  }

  /** @param {string} phase @param {object} detail */
  emit(phase, detail) {
    if (!this._emit) return;
    const o = this.overall;
    const fraction = phase === 'ready' ? 1 : (o.total > 0 ? Math.min(1, o.loaded / o.total) : 0);
    try {
      this._emit({ phase, ...detail, overall: { ...o }, fraction });
    } catch { /* a listener must not break a load */ }
  }

  _entry(variant, file) {
    const key = `${variant}/${file.path}`;
    if (!this.files.has(key)) this.expect(variant, [file]);
    return this.files.get(key);
  }
}

/**
 * Read a response body into one ArrayBuffer, calling `onBytes(loaded)` as it arrives. `expected`
 * (the manifest's size) sizes the buffer up front; a longer body grows it (integrity then refuses
 * it). Where the body is a byte stream (fetch in browsers) a BYOB reader reads straight into that
 * buffer, at most `maxChunk` bytes a read, so progress is as fine as promised however the bytes
 * were buffered; otherwise the default reader's chunks are copied in. Without a readable body
 * it falls back to arrayBuffer().
 * @param {Response} response @param {number} expected @param {(loaded: number) => void} onBytes
 * @param {{maxChunk?: number}} [opts]
 * @returns {Promise<ArrayBuffer>}
 */
export async function readBody(response, expected, onBytes, opts = {}) {
  const body = response.body;
  if (!body || typeof body.getReader !== 'function') {
    const bytes = await response.arrayBuffer();
    onBytes(bytes.byteLength);
    return bytes;
  }
  const size = Math.max(0, Number(expected) || 0);
  let byob = null;
  try {
    byob = body.getReader({ mode: 'byob' });
  } catch { /* not a byte stream */ }
  const { buffer, loaded } = byob
    ? await readByob(byob, size, opts.maxChunk || STEP_BYTES, onBytes)
    : await readChunks(body.getReader(), size, onBytes);
  if (loaded === 0) onBytes(0);
  return loaded === buffer.byteLength ? buffer : buffer.slice(0, loaded);
}

/** A copy of `buffer` with room for at least `need` bytes (doubling). */
function grow(buffer, loaded, need) {
  const out = new Uint8Array(Math.max(need, buffer.byteLength * 2, 65536));
  out.set(new Uint8Array(buffer, 0, loaded));
  return out.buffer;
}

async function readByob(reader, size, maxChunk, onBytes) {
  let buffer = new ArrayBuffer(size);
  let loaded = 0;
  for (;;) {
    // At the announced size, probe for more with a small view of a scratch buffer.
    const full = loaded === buffer.byteLength;
    const view = full ? new Uint8Array(4096) : new Uint8Array(buffer, loaded, Math.min(maxChunk, buffer.byteLength - loaded));
    const { done, value } = await reader.read(view);
    if (full) {
      if (done || !value || !value.byteLength) break;
      buffer = grow(buffer, loaded, loaded + value.byteLength);
      new Uint8Array(buffer).set(value, loaded);
    } else {
      if (value) buffer = value.buffer; // the read transferred it
      if (done) break;
    }
    loaded += value.byteLength;
    onBytes(loaded);
  }
  return { buffer, loaded };
}

async function readChunks(reader, size, onBytes) {
  let buffer = new ArrayBuffer(size);
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.byteLength > buffer.byteLength) buffer = grow(buffer, loaded, loaded + value.byteLength);
    new Uint8Array(buffer).set(value, loaded);
    loaded += value.byteLength;
    onBytes(loaded);
  }
  return { buffer, loaded };
}
