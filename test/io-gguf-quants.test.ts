/**
 * The dequantizers against llama.cpp's own: ../shared/zoo-gguf/vectors holds random blocks of
 * every GGUF type and gguf-py's dequantization of them (skipped with a reason when absent). Every
 * decoded type must match bit for bit; the others must be refused by name.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { BadInputError } from '../src/io/errors.js';
import { dequantizeBlocks, ggmlTypeByName, GGUF_DECODED_TYPES, hasDecoder } from '../src/io/gguf-quants.js';
import { REPO_ROOT } from './cli-child-process.js';

const VECTORS = path.resolve(REPO_ROOT, '..', 'shared', 'zoo-gguf', 'vectors');

interface VectorIndex {
  readonly types: Readonly<Record<string, { type_id: number; block_elements: number; block_bytes: number; blocks: number }>>;
}

describe('GGUF dequantizers against gguf-py reference vectors', () => {
  if (!fs.existsSync(path.join(VECTORS, 'index.json'))) {
    test('reference vectors', (t) => t.skip('vectors not found at ../shared/zoo-gguf/vectors (relative to the repository root)'));
    return;
  }
  const index = JSON.parse(fs.readFileSync(path.join(VECTORS, 'index.json'), 'utf8')) as VectorIndex;
  for (const [name, spec] of Object.entries(index.types)) {
    const type = ggmlTypeByName(name);
    test(`${name}: block geometry`, () => {
      assert.ok(type, `${name} is known`);
      assert.equal(type.id, spec.type_id);
      assert.equal(type.blockElements, spec.block_elements);
      assert.equal(type.blockBytes, spec.block_bytes);
    });
    if (!(GGUF_DECODED_TYPES as readonly string[]).includes(name)) {
      test(`${name}: refused with its name`, () => {
        assert.equal(hasDecoder(name), false);
        assert.throws(() => dequantizeBlocks(name, new Uint8Array(spec.block_bytes), 0, 1, new Float32Array(spec.block_elements), 0, null, { tensor: 't' }),
          (err: unknown) => err instanceof BadInputError && err.message.startsWith(`unsupported tensor type ${name} in tensor t`));
      });
      continue;
    }
    test(`${name}: bit-exact with gguf-py`, () => {
      const raw = fs.readFileSync(path.join(VECTORS, `${name}.bin`));
      const want = fs.readFileSync(path.join(VECTORS, `${name}.f32`));
      const count = spec.blocks * spec.block_elements;
      assert.equal(raw.length, spec.blocks * spec.block_bytes);
      // Decode at an odd offset in both arrays: nothing may assume alignment.
      const src = new Uint8Array(raw.length + 3);
      src.set(raw, 3);
      const out = new Float32Array(count + 5);
      const variance = new Float32Array(count + 5);
      dequantizeBlocks(name, src, 3, spec.blocks, out, 5, variance);
      const got = new Uint32Array(out.buffer, 20, count);
      const expected = new Uint32Array(want.buffer.slice(want.byteOffset, want.byteOffset + count * 4));
      for (let i = 0; i < count; i++) {
        const bothNaN = Number.isNaN(out[5 + i]) && Number.isNaN(new Float32Array(expected.buffer)[i]);
        if (!bothNaN) assert.equal(got[i], expected[i], `${name} element ${i}: ${out[5 + i]} vs ${new Float32Array(expected.buffer)[i]}`);
      }
      for (let i = 0; i < count; i++) assert.ok(variance[5 + i]! >= 0 || Number.isNaN(out[5 + i]), `${name} variance ${i}`);
    });
  }
});
