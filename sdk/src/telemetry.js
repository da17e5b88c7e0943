/**
 * Pluggable telemetry. A sink is a function, an object with `send(event)`, or an array of either;
 * the telemetry issue plugs in a sink that posts home. A sink that throws never breaks
 * classification: its error is swallowed (and counted), because telemetry is not the product.
 *
 * Event types: `init`, `load`, `predict`, `error`, `fallback`, `memory`. Every event carries
 * `type`, `t` (ms since the SDK started loading), `model`, `version`, `engine`, `backend`,
 * `variant` and `device` (a coarse class), plus type-specific timings and reasons.
 * @module telemetry
 */

export const EVENT_TYPES = Object.freeze(['init', 'load', 'predict', 'error', 'fallback', 'memory']);

/**
 * @typedef {{type: string, t: number, model?: string, version?: number, engine?: string,
 *   backend?: string, variant?: string, device?: string, [k: string]: any}} TelemetryEvent
 */

/** Fan-out emitter that stamps context onto every event. */
export class Telemetry {
  /**
   * @param {any} sink function | {send} | array of those | null
   * @param {{device?: string, predictSampleRate?: number, now?: () => number, keep?: number}} [opts]
   */
  constructor(sink, opts = {}) {
    this.sinks = normaliseSinks(sink);
    this.context = { device: opts.device };
    this.now = opts.now || (() => (typeof performance !== 'undefined' ? performance.now() : Date.now()));
    this.start = this.now();
    this.sampleRate = opts.predictSampleRate === undefined ? 1 : opts.predictSampleRate;
    this.keep = opts.keep === undefined ? 50 : opts.keep;
    /** the last few non-predict events, for `stats()` and debugging */
    this.recent = [];
    this.sinkErrors = 0;
    this.predictSeen = 0;
  }

  /** Merge into the context stamped on later events (model, version, engine, backend, variant). */
  set(fields) {
    Object.assign(this.context, fields);
  }

  /**
   * Emit one event. `predict` events are sampled (every 1/rate-th), others always go out.
   * @param {string} type one of EVENT_TYPES
   * @param {object} [fields]
   * @returns {TelemetryEvent | null} the event as sent, or null when sampled out
   */
  emit(type, fields = {}) {
    if (!EVENT_TYPES.includes(type)) throw new TypeError(`unknown telemetry event type ${type}`);
    if (type === 'predict') {
      this.predictSeen += 1;
      if (!shouldSample(this.predictSeen, this.sampleRate)) return null;
    }
    const event = { type, t: Math.round(this.now() - this.start), ...this.context, ...fields };
    if (type !== 'predict') {
      this.recent.push(event);
      if (this.recent.length > this.keep) this.recent.shift();
    }
    for (const sink of this.sinks) {
      try {
        sink(event);
      } catch {
        this.sinkErrors += 1;
      }
    }
    return event;
  }
}

/**
 * Deterministic sampling: the n-th event (1-based) is kept when it crosses a multiple of 1/rate.
 * rate 1 keeps all, 0 keeps none, 0.1 keeps the 10th, 20th, ...
 * @param {number} n
 * @param {number} rate
 */
export function shouldSample(n, rate) {
  if (rate >= 1) return true;
  if (rate <= 0) return false;
  return Math.floor(n * rate) > Math.floor((n - 1) * rate);
}

/**
 * @param {any} sink
 * @returns {((e: TelemetryEvent) => void)[]}
 */
export function normaliseSinks(sink) {
  if (!sink) return [];
  const list = Array.isArray(sink) ? sink : [sink];
  return list.filter(Boolean).map((s) => {
    if (typeof s === 'function') return s;
    if (typeof s.send === 'function') return (e) => s.send(e);
    throw new TypeError('a telemetry sink is a function or an object with send(event)');
  });
}
