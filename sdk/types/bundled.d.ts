/** `@browserml/sdk/bundled`: the SDK with TF.js, its wasm backend and LiteRT.js resolved by your bundler. */
import type { Classifier, LoadOptions, Runtimes } from './browserml.js';

export * from './browserml.js';

/** The runtimes this entry point hands the SDK. */
export declare const runtimes: Readonly<Required<Runtimes>>;
/** `load` with the bundled runtimes (worker mode: the /vendor/ ones). */
export declare function load(options: LoadOptions): Promise<Classifier>;
export declare const BrowserML: Readonly<{ load: typeof load }>;
export default BrowserML;
