/**
 * BrowserML browser SDK — public API types (`@browserml/sdk`).
 *
 * ```ts
 * import { load, type ClassifyResult, type LoadProgressEvent } from '@browserml/sdk';
 * const clf = await load({ model: 'digits', onProgress: (e) => console.log(e.phase, e.fraction) });
 * const result: ClassifyResult = await clf.classify(file, { topK: 3 });
 * ```
 */

/** Engines the SDK runs models on. */
export type Engine = 'tfjs' | 'litert';
/** TF.js backends (LiteRT.js runs on `wasm`). */
export type Backend = 'webgpu' | 'webgl' | 'wasm' | 'cpu';
/** Anything `classify` decodes: files, blobs, bitmaps, pixels, images and canvases. */
export type ImageInput =
  | Blob
  | ImageBitmap
  | ImageData
  | HTMLImageElement
  | HTMLCanvasElement
  | OffscreenCanvas;

/** Bytes done / total, overall (every file of the variants being loaded). */
export interface ProgressOverall {
  loaded: number;
  total: number;
  files: number;
  filesDone: number;
}

/** One load progress event (`onProgress`, and the classifier's `progress` events). */
export interface LoadProgressEvent {
  phase: 'manifest' | 'download' | 'verify' | 'compile' | 'warmup' | 'ready';
  /** Variant the file or phase belongs to (`uint8`, `float16`, `float32`, `tflite-int8`...). */
  variant?: string;
  /** File path inside the variant (download, verify). */
  file?: string;
  /** Where the file's bytes came from (download, verify). */
  source?: 'network' | 'cache';
  engine?: Engine;
  backend?: Backend;
  /** This file's bytes so far (download, verify); 0 for phases without bytes. */
  loaded: number;
  /** This file's size (download, verify); 0 for phases without bytes. */
  total: number;
  overall: ProgressOverall;
  /** overall.loaded / overall.total in [0, 1]; exactly 1 on `ready`. */
  fraction: number;
}

/** A telemetry event as sinks receive it. */
export interface TelemetryEvent {
  type: 'init' | 'load' | 'predict' | 'error' | 'fallback' | 'memory';
  t: number;
  model?: string;
  version?: number;
  engine?: Engine;
  backend?: Backend;
  variant?: string;
  device?: string;
  [field: string]: unknown;
}

/** Where telemetry events go: a function, an object with `send`, or several. */
export type TelemetrySink =
  | ((event: TelemetryEvent) => void)
  | { send(event: TelemetryEvent): void };

/** Runtimes a bundler resolved (see `@browserml/sdk/bundled`). */
export interface Runtimes {
  /** `import * as tf from '@tensorflow/tfjs'` */
  tf?: object;
  /** `import * as tfWasm from '@tensorflow/tfjs-backend-wasm'` */
  tfWasm?: object;
  /** `import * as litert from '@litertjs/core'` */
  litert?: object;
}

export interface LoadOptions {
  /** Model name in the registry. */
  model: string;
  /**
   * Base URL of the model files (default: this page's origin): a BrowserML server, or a static
   * tree written by `browserml export` on any CDN (a path prefix is kept). Telemetry goes where
   * the sink says (`httpSink({ server: apiUrl })`).
   */
  server?: string;
  /** Release channel (default `stable`). */
  channel?: string;
  /** Opaque id for canary bucketing (default: one kept in localStorage). */
  clientId?: string;
  /** Base URL of the vendored runtimes (default `${server}/vendor/`). */
  vendor?: string;
  /** TF.js, its wasm backend and LiteRT.js as your bundler resolved them. */
  runtimes?: Runtimes;
  /** Where TF.js's wasm binaries are (default: the vendor tree). */
  wasmPaths?: string;
  /** Only consider these backends. */
  backends?: Backend[];
  /** Only consider these variants. */
  variants?: string[];
  /** Only consider these engines. */
  engines?: Array<'tfjs' | 'litert'>;
  /** Time for timing one candidate against the current one, ms (default 1500). */
  selectionBudgetMs?: number;
  /** Idle time for measuring alternatives after the first answer, compile included, ms (default 4000). */
  upgradeBudgetMs?: number;
  /** Reuse / store the measured choice (default true). */
  remember?: boolean;
  /** Bytes, or per-kind limits, before the backend is rebuilt. */
  memoryBudget?: number | { numBytes?: number; numBytesInGPU?: number; numTensors?: number };
  /** Predictions between memory checks (default 100). */
  memoryCheckEvery?: number;
  /** Decode cap for huge images (default 4 MP). */
  maxPixels?: number;
  /** Use the Cache API (default true). */
  cache?: boolean;
  /** wasm threads to ask for. */
  threads?: number;
  /** LiteRT.js upgrade after the first prediction (default `auto`). */
  litert?: 'auto' | 'force' | 'off';
  /** TF.js must need at least this many ms a prediction before LiteRT.js is fetched (default 10). */
  litertMinMs?: number;
  /** Fraction of predict events sent to telemetry (default 1). */
  predictSampleRate?: number;
  /** Run inference in a Web Worker (runtimes then come from /vendor/). */
  worker?: boolean;
  /** Telemetry sink(s), e.g. `httpSink()`. */
  telemetry?: TelemetrySink | TelemetrySink[];
  /** Share one instance per (server, model, channel, worker) on the page (default true). */
  shared?: boolean;
  /** Load progress: bytes per file and overall, integrity checks, compile, warm-up. */
  onProgress?: (event: LoadProgressEvent) => void;
}

/** What every result carries about where it was computed. */
export interface ResultInfo {
  backend: Backend;
  variant: string;
  version: number;
  engine: Engine;
  threads: number;
}

export interface LabelScore {
  label: string;
  p: number;
}

export interface ClassifyResult extends ResultInfo {
  /** Top-k labels, most probable first. */
  labels: LabelScore[];
  /** Milliseconds for this image (decode + inference). */
  ms: number;
}

/** A batch slot: a result, or the error that input got (the others still classify). */
export type BatchResult = ClassifyResult | (ResultInfo & { error: BrowserMLError });

export interface ClassifyOptions {
  /** How many labels to return (default 3). */
  topK?: number;
}

/** The LiteRT.js upgrade's outcome. */
export interface UpgradeOutcome {
  state: 'none' | 'skipped' | 'pending' | 'loading' | 'switched' | 'kept' | 'failed' | 'remembered';
  reason: string;
  [field: string]: unknown;
}

export interface ClassifierStats {
  model: string;
  version: number | null;
  engine: Engine | null;
  engineVersion: string;
  backend: Backend | null;
  variant: string | null;
  threads: number | null;
  device: string;
  upgrade: UpgradeOutcome;
  fallbacks: { from: string; phase: string; code: string; reason: string }[];
  rebuilds: number;
  load: Record<string, unknown> | null;
  selection: Record<string, unknown> | null;
  [field: string]: unknown;
}

export interface ClassifierEventMap {
  progress: CustomEvent<LoadProgressEvent>;
}

/** A loaded model. Dispatches `progress` events for loads after `load` resolved. */
export declare class Classifier extends EventTarget {
  private constructor();
  classify(input: ImageInput, options?: ClassifyOptions): Promise<ClassifyResult>;
  classifyBatch(inputs: ImageInput[], options?: ClassifyOptions): Promise<BatchResult[]>;
  upgraded(): Promise<UpgradeOutcome>;
  /**
   * Time the current path at batch sizes 1, 8 and 32 (ms per image); `classifyBatch` uses the best
   * from then on. Predictions wait while it runs.
   */
  measureBatches(sizes?: number[]): Promise<{ sizes: Record<string, number>; best: number }>;
  /** A plain object on the page; a Promise in worker mode. */
  stats(): ClassifierStats | Promise<ClassifierStats>;
  rebuild(reason?: string): Promise<void>;
  dispose(): Promise<void>;
  addEventListener<K extends keyof ClassifierEventMap>(
    type: K, listener: (event: ClassifierEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(
    type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof ClassifierEventMap>(
    type: K, listener: (event: ClassifierEventMap[K]) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(
    type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** Load a classifier: manifest, verified files (cache or network), backend chosen by measuring, warm-up. */
export declare function load(options: LoadOptions): Promise<Classifier>;

/** The SDK's stable random client id (localStorage), used for canary bucketing. */
export declare function clientId(): string | undefined;

export declare const BrowserML: Readonly<{ load: typeof load }>;
export default BrowserML;

/** Download progress is reported at least every this many bytes overall. */
export declare const PROGRESS_STEP_BYTES: number;

export declare class BrowserMLError extends Error {
  constructor(message: string, code?: string, details?: object);
  /** Stable machine-readable reason, e.g. `empty`, `not-image`, `integrity`, `not-found`. */
  code: string;
  details?: object;
  toJSON(): { name: string; code: string; message: string; details?: object };
}
export declare class InputError extends BrowserMLError {}
export declare class IntegrityError extends BrowserMLError {
  constructor(message: string, details?: object);
}
export declare class LoadError extends BrowserMLError {}
export declare class EngineError extends BrowserMLError {}

export interface HttpSinkOptions {
  url?: string;
  server?: string;
  intervalMs?: number;
  maxBatch?: number;
  maxQueue?: number;
}

/** Batches telemetry events to `POST /v1/telemetry` (sendBeacon on pagehide). */
export declare class HttpSink {
  constructor(options?: HttpSinkOptions);
  send(event: TelemetryEvent): void;
  flush(): Promise<void>;
  flushBeacon(): void;
  close(): void;
  stats(): Record<string, number>;
}
export declare function httpSink(options?: HttpSinkOptions): HttpSink;
