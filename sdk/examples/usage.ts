// A typed usage example of the published package (copied into a clean npm project): `tsc --noEmit` must accept it (tests/test_sdk_npm.py).
import BrowserML, {
  type BatchResult, type ClassifierStats, type ClassifyResult, type LoadProgressEvent,
  BrowserMLError, IntegrityError, clientId, httpSink, load,
} from '@browserml/sdk';
import { load as loadBundled, runtimes } from '@browserml/sdk/bundled';

export async function classifyFile(file: File, bar: HTMLProgressElement): Promise<string> {
  const seen: LoadProgressEvent[] = [];
  const clf = await load({
    model: 'digits',
    channel: 'stable',
    backends: ['wasm', 'cpu'],
    engines: ['tfjs', 'litert'],
    upgradeBudgetMs: 4000,
    telemetry: [httpSink({ intervalMs: 5000 }), (e) => console.log(e.type, e.model)],
    onProgress: (e) => {
      seen.push(e);
      bar.value = e.fraction;
      if (e.phase === 'download' && e.source === 'cache') console.log(`${e.file}: ${e.loaded}/${e.total}`);
    },
  });
  clf.addEventListener('progress', (e) => { bar.value = e.detail.overall.loaded / e.detail.overall.total; });
  const result: ClassifyResult = await clf.classify(file, { topK: 3 });
  const batch: BatchResult[] = await clf.classifyBatch([file, new ImageData(28, 28)]);
  for (const slot of batch) {
    if ('error' in slot) console.warn(slot.error.code, slot.error instanceof IntegrityError);
    else console.log(slot.labels[0].p.toFixed(3));
  }
  const { best } = await clf.measureBatches([1, 8, 32]);
  const stats: ClassifierStats = await clf.stats();
  const upgrade = await clf.upgraded();
  await clf.dispose();
  return `${result.labels[0].label} in ${result.ms.toFixed(1)} ms on ${result.engine}/${result.backend}`
    + ` (${stats.variant}, batch ${best}, upgrade ${upgrade.state}, ${seen.length} progress events, client ${clientId() ?? '-'})`;
}

export async function bundled(canvas: HTMLCanvasElement): Promise<number> {
  const clf = await loadBundled({ model: 'digits', server: 'https://models.example.com', litert: 'off' });
  const { labels } = await clf.classify(canvas);
  return labels.length + Object.keys(runtimes).length;
}

export function describe(err: unknown): string {
  return err instanceof BrowserMLError ? `${err.name} (${err.code}): ${err.message}` : String(err);
}

// @ts-expect-error a model name is required
void BrowserML.load({ channel: 'stable' });
// @ts-expect-error topK is a number
void load({ model: 'digits' }).then((c) => c.classify(new Blob(), { topK: 'three' }));
