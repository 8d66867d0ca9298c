/**
 * The page-cache prefetcher: which byte spans a set of tensors becomes (per file, in order,
 * neighbours merged), that its helper thread really reads them, and that a source which was
 * asked to prefetch still reads exactly and closes cleanly.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PageCachePrefetcher, tensorSpans } from '../src/io/prefetch.js';
import { openTensorSource } from '../src/io/source.js';
import type { TensorInfo } from '../src/io/types.js';
import { writeSafetensors } from './helpers/safetensors-writer.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'io-prefetch-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const info = (name: string, file: string, start: number, byteLength: number): TensorInfo => ({ name, dtype: 'F32', shape: [byteLength / 4], file, start, byteLength });

test('tensorSpans: per file in file order, by offset; neighbours within 1 MiB merged, farther ones apart', () => {
  const mib = 1 << 20;
  const spans = tensorSpans([
    info('c', 'b.safetensors', 100, 400),
    info('a', 'a.safetensors', 10 * mib, mib),
    info('b', 'a.safetensors', 0, 4 * mib),
    info('d', 'a.safetensors', 4 * mib + 512, mib), // 512 bytes after b: merged with it
  ]);
  assert.deepEqual(spans, [
    { file: 'a.safetensors', start: 0, end: 5 * mib + 512 },
    { file: 'a.safetensors', start: 10 * mib, end: 11 * mib },
    { file: 'b.safetensors', start: 100, end: 500 },
  ]);
  assert.deepEqual(tensorSpans([]), []);
});

async function until(done: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !done(); waited += 10) {
    if (waited > 10000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('the helper thread reads every byte of the spans it is given (short files: to their end), and nothing after close', async () => {
  const file = path.join(root, 'bytes.bin');
  fs.writeFileSync(file, Buffer.alloc(3 * (1 << 20) + 5));
  const prefetcher = new PageCachePrefetcher();
  prefetcher.request([{ file, start: 0, end: 1 << 20 }, { file, start: 2 << 20, end: 4 << 20 }]);
  await until(() => prefetcher.bytesRead === (1 << 20) + (1 << 20) + 5, 'the prefetched bytes');
  // A missing file is skipped, not an error.
  prefetcher.request([{ file: path.join(root, 'missing.bin'), start: 0, end: 10 }, { file, start: 0, end: 7 }]);
  await until(() => prefetcher.bytesRead === (2 << 20) + 12, 'the bytes after a missing file');
  prefetcher.close();
  prefetcher.request([{ file, start: 0, end: 7 }]);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(prefetcher.bytesRead, (2 << 20) + 12);
});

test('a source asked to prefetch reads the same values and closes with the helper still busy', () => {
  const file = path.join(root, 'model.safetensors');
  const values = Float32Array.from({ length: 64 * 64 }, (_, i) => i / 7);
  writeSafetensors(file, { a: { shape: [64, 64], data: values }, b: { shape: [64, 64], data: values.map((v) => -v) } });
  const source = openTensorSource(file);
  source.prefetch(['b', 'a']);
  assert.deepEqual(source.read('a'), Float32Array.from(values));
  assert.throws(() => source.prefetch(['nope']), /nope/);
  source.close();
});
