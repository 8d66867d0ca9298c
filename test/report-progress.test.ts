/** Progress on stderr: shown only on a terminal, silent with --json / --quiet, fed by io's onBytes. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Command } from 'commander';
import { openTensorSource } from '../src/io/source.js';
import { encodeValues, writeSafetensorsStreaming } from '../src/io/writer.js';
import { startPass, type Progress } from '../src/api/options.js';
import { addQuietOption, describeProgress, formatBytes, formatDuration, progressDisplay, progressEnabled, startWeightPass, type ProgressStream } from '../src/cli/progress.js';

/** A stream that records what was written; `isTTY` as asked, with the cursor calls a terminal has. */
function captureStream(isTTY: boolean): { stream: ProgressStream; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  }) as Writable & { isTTY: boolean; columns: number; cursorTo: () => boolean; clearLine: () => boolean; moveCursor: () => boolean };
  stream.isTTY = isTTY;
  stream.columns = 120;
  stream.cursorTo = () => true;
  stream.clearLine = () => true;
  stream.moveCursor = () => true;
  return { stream, text: () => chunks.join('') };
}

test('formatBytes, formatDuration and describeProgress: known answers', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(412 * 1024 ** 2), '412 MiB');
  assert.equal(formatBytes(1.5 * 1024 ** 3), '1.50 GiB');
  assert.equal(formatDuration(7.4), '7s');
  assert.equal(formatDuration(65), '1m05s');
  assert.equal(formatDuration(3725), '1h02m');
  assert.equal(formatDuration(Number.NaN), '?');
  // 512 MiB of 2 GiB in 4 s: 128 MiB/s, 1.5 GiB left = 12 s.
  assert.equal(describeProgress(512 * 1024 ** 2, 2 * 1024 ** 3, 4), '512 MiB / 2.00 GiB  128 MiB/s  ETA 12s');
  assert.equal(describeProgress(0, 1024, 0), '0 B / 1.00 KiB  -  ETA ?');
});

test('progress is shown only on a terminal, and never with --json or --quiet', () => {
  const tty = captureStream(true).stream;
  const pipe = captureStream(false).stream;
  assert.equal(progressEnabled({}, tty), true);
  assert.equal(progressEnabled({ json: true }, tty), false);
  assert.equal(progressEnabled({ quiet: true }, tty), false);
  assert.equal(progressEnabled({}, pipe), false);
});

test('--quiet is parsed as options.quiet', () => {
  const command = addQuietOption(new Command('x').exitOverride());
  command.parse(['--quiet'], { from: 'user' });
  assert.equal(command.opts()['quiet'], true);
  const short = addQuietOption(new Command('x').exitOverride());
  short.parse(['-q'], { from: 'user' });
  assert.equal(short.opts()['quiet'], true);
});

test('a pass over a real model file: bytes counted through onBytes, drawn on a TTY, silent when piped', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lineage-progress-'));
  try {
    const file = path.join(dir, 'model.safetensors');
    const specs = [{ name: 'a', dtype: 'F32', shape: [64, 32] }, { name: 'b', dtype: 'F32', shape: [16] }] as const;
    writeSafetensorsStreaming(file, specs, (spec, write) => write(encodeValues('F32', new Float32Array(spec.shape.reduce((p, d) => p * d, 1)).fill(0.5))));
    const totalBytes = (64 * 32 + 16) * 4;
    for (const isTTY of [true, false]) {
      const { stream, text } = captureStream(isTTY);
      const pass = startWeightPass('reading model', totalBytes, {}, stream);
      const calls: number[] = [];
      // A small buffer forces several reads, so onBytes fires per chunk.
      const source = openTensorSource(file, { bufferBytes: 1024, onBytes: (n) => { calls.push(n); pass.onBytes(n); } });
      for (const name of source.tensors.keys()) source.read(name);
      assert.equal(source.bytesRead, totalBytes);
      source.close();
      pass.stop();
      pass.stop();
      assert.equal(pass.bytes(), totalBytes);
      assert.deepEqual(calls, [1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 64]);
      if (isTTY) {
        assert.match(text(), /reading model .*0 B \/ 8\.06 KiB/);
      } else {
        assert.equal(text(), '', 'nothing written when stderr is not a terminal');
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the library's progress: each pass reported from 0, drawn as one bar per pass on a terminal, not at all when piped", () => {
  const seen: Progress[] = [];
  const count = startPass((p) => seen.push(p), 'sketch', 'sketching 2 models', 2048);
  count(1024);
  count(1024);
  assert.deepEqual(seen.map((p) => p.bytesDone), [0, 1024, 2048]);
  assert.ok(seen.every((p) => p.phase === 'sketch' && p.bytesTotal === 2048));
  startPass(undefined, 'verify', 'nobody listens', 10)(10); // a no-op without a listener

  const { stream, text } = captureStream(true);
  const display = progressDisplay({}, stream);
  assert.ok(display.onProgress);
  const sketch = startPass(display.onProgress, 'sketch', 'sketching 2 models', 2048);
  sketch(2048);
  startPass(display.onProgress, 'align', 'aligning o1 onto p0', 4096)(4096);
  display.stop();
  display.stop();
  assert.match(text(), /sketching 2 models .*0 B \/ 2\.00 KiB/);
  assert.match(text(), /aligning o1 onto p0 .*0 B \/ 4\.00 KiB/);

  const piped = captureStream(false);
  assert.equal(progressDisplay({}, piped.stream).onProgress, undefined);
  assert.equal(progressDisplay({ quiet: true }, captureStream(true).stream).onProgress, undefined);
  assert.equal(piped.text(), '');
});
