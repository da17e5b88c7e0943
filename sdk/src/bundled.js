/**
 * The SDK for bundlers (esbuild, Vite, webpack): the same API as browserml.js, with TF.js, its
 * wasm backend and LiteRT.js resolved from npm by your bundler instead of loaded from the
 * server's /vendor/ at run time.
 *
 * ```js
 * import { load } from '@browserml/sdk/bundled';
 * const clf = await load({ model: 'digits', server: 'https://models.example.com' });
 * ```
 *
 * The wasm binaries (TF.js's and LiteRT.js's) are not JavaScript a bundler can inline: they still
 * come from the server's /vendor/ (or `wasmPaths` for TF.js, if your build copies them). Worker
 * mode keeps loading its runtimes from /vendor/ (a worker cannot receive these modules).
 * @module bundled
 */

import * as tf from '@tensorflow/tfjs';
import * as tfWasm from '@tensorflow/tfjs-backend-wasm';
import * as litert from '@litertjs/core';
import { load as loadWith } from './browserml.js';

export * from './browserml.js';

/** The runtimes this entry point hands the SDK. */
export const runtimes = Object.freeze({ tf, tfWasm, litert });

/**
 * `BrowserML.load` with the bundled runtimes (worker mode: the /vendor/ ones).
 * @param {Parameters<typeof loadWith>[0]} options
 */
export function load(options) {
  return loadWith(options && options.worker ? options : { runtimes, ...options });
}

export const BrowserML = Object.freeze({ load });
export default BrowserML;
