/**
 * Error types the SDK throws, each with a stable `code` so callers (and the demo page) can react
 * without parsing messages, and a message written for the person who sees it.
 *
 * Errors cross the worker boundary as plain objects ({name, code, message}); `fromPlain` rebuilds
 * them so `instanceof` keeps working in worker mode.
 * @module errors
 */

/** Base class of every error the SDK throws on purpose. */
export class BrowserMLError extends Error {
  /**
   * @param {string} message what went wrong and, where possible, what to do
   * @param {string} code stable machine-readable reason
   * @param {object} [details] extra plain data (never tensors)
   */
  constructor(message, code = 'error', details = undefined) {
    super(message);
    this.name = 'BrowserMLError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }

  /** @returns {{name: string, code: string, message: string, details?: object}} */
  toJSON() {
    return { name: this.name, code: this.code, message: this.message, details: this.details };
  }
}

/** The user's input is not a usable image: empty, not an image, or corrupt/truncated. */
export class InputError extends BrowserMLError {
  constructor(message, code = 'bad-input', details = undefined) {
    super(message, code, details);
    this.name = 'InputError';
  }
}

/** A downloaded or cached file does not match the sha256 / size the manifest promises. */
export class IntegrityError extends BrowserMLError {
  constructor(message, details = undefined) {
    super(message, 'integrity', details);
    this.name = 'IntegrityError';
  }
}

/** The manifest or a model file could not be fetched or parsed. */
export class LoadError extends BrowserMLError {
  constructor(message, code = 'load', details = undefined) {
    super(message, code, details);
    this.name = 'LoadError';
  }
}

/** An engine/backend failed at run time (context lost, kernel error) or produced NaN. */
export class EngineError extends BrowserMLError {
  constructor(message, code = 'engine', details = undefined) {
    super(message, code, details);
    this.name = 'EngineError';
  }
}

const TYPES = { BrowserMLError, InputError, IntegrityError, LoadError, EngineError };

/**
 * Rebuild an error sent as a plain object (e.g. from the worker).
 * @param {{name?: string, code?: string, message?: string, details?: object}} plain
 * @returns {Error}
 */
export function fromPlain(plain) {
  const Type = TYPES[plain && plain.name] || BrowserMLError;
  const err = Type === IntegrityError
    ? new IntegrityError(plain.message, plain.details)
    : new Type(plain.message, plain.code, plain.details);
  if (plain.code) err.code = plain.code;
  return err;
}

/**
 * Turn any thrown value into a plain object that survives postMessage and JSON.
 * @param {unknown} err
 * @returns {{name: string, code: string, message: string, details?: object}}
 */
export function toPlain(err) {
  if (err instanceof BrowserMLError) return err.toJSON();
  const e = /** @type {any} */ (err);
  return { name: (e && e.name) || 'Error', code: (e && e.code) || 'error', message: String((e && e.message) || e) };
}
