/**
 * The runtime's gate: predictions run side by side, exclusive work (a recovery, a rebuild, the
 * upgrade timing the current path) runs alone — it waits for the predictions in flight to settle,
 * and predictions arriving meanwhile wait for it. One gate per runtime; no engine, no DOM.
 * @module gate
 */

export class Gate {
  constructor() {
    /** @type {Promise<void> | null} settles when the exclusive section ends */
    this._busy = null;
    /** predictions in flight */
    this._running = new Set();
  }

  /** Whether an exclusive section is running or queued. */
  get busy() {
    return this._busy !== null;
  }

  /** Resolve once the exclusive section running now (if any) has ended: a prediction's turn. */
  async turn() {
    if (this._busy) await this._busy;
  }

  /**
   * Count `run` as a prediction in flight until it settles; its result or error passes through.
   * @template T @param {Promise<T>} run @returns {Promise<T>}
   */
  async track(run) {
    this._running.add(run);
    try {
      return await run;
    } finally {
      this._running.delete(run);
    }
  }

  /**
   * Run `fn` alone: after the predictions in flight and any earlier exclusive section; its
   * result or error passes through, and a failure does not block later sections.
   * @template T @param {() => T | Promise<T>} fn @returns {Promise<T>}
   */
  async exclusive(fn) {
    while (this._busy) await this._busy;
    const p = (async () => {
      if (this._running.size) await Promise.allSettled([...this._running]);
      return fn();
    })();
    this._busy = p.catch(() => {}).finally(() => { this._busy = null; });
    return p;
  }
}
