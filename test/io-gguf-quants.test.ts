/**
 * The dequantizers against llama.cpp's own: ../shared/zoo-gguf/vectors holds random blocks of
 * every GGUF type and gguf-py's dequantization of them (skipped with a reason when absent). Every
 * decoded type must match bit for bit, through the WebAssembly decoders and the JavaScript ones;
 * the others must be refused by name. The WebAssembly decoders also match the JavaScript ones on
 * random blocks of any bytes, over more blocks than one call of a kernel stages.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { BadInputError } from '../src/io/errors.js';
import { dequantizeBlocks, ggmlTypeByName, GGUF_DECODED_TYPES, hasDecoder, useWasmDequantizers } from '../src/io/gguf-quants.js';
import { GGUF_WASM_BASE64 } from '../src/io/gguf-wasm.js';
import { WASM_DEQUANT_TYPES } from '../src/io/gguf-wat.js';
import { Rng } from '../src/linalg/rng.js';
import { compileGguf } from '../scripts/build-gemm-wasm.js';
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
    for (const wasm of [true, false]) test(`${name}: bit-exact with gguf-py (${wasm ? 'WebAssembly where there is a kernel' : 'JavaScript'})`, () => {
      const raw = fs.readFileSync(path.join(VECTORS, `${name}.bin`));
      const want = fs.readFileSync(path.join(VECTORS, `${name}.f32`));
      const count = spec.blocks * spec.block_elements;
      assert.equal(raw.length, spec.blocks * spec.block_bytes);
      // Decode at an odd offset in both arrays: nothing may assume alignment.
      const src = new Uint8Array(raw.length + 3);
      src.set(raw, 3);
      const out = new Float32Array(count + 5);
      const variance = new Float32Array(count + 5);
      useWasmDequantizers(wasm);
      try {
        dequantizeBlocks(name, src, 3, spec.blocks, out, 5, variance);
      } finally {
        useWasmDequantizers(true);
      }
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

test('GGUF dequantizers: the committed WebAssembly is compiled from the current text', async () => {
  assert.equal(Buffer.from(await compileGguf()).toString('base64'), GGUF_WASM_BASE64);
});

/** Float32 bits equal, or both NaN (a NaN's payload is not specified by WebAssembly). */
function sameFloat32(a: Float32Array, b: Float32Array, what: string): void {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) {
    if (x[i] !== y[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) assert.fail(`${what} element ${i}: ${a[i]} vs ${b[i]}`);
  }
}

for (const type of WASM_DEQUANT_TYPES) {
  test(`${type}: WebAssembly and JavaScript decoders agree bit for bit on random blocks`, () => {
    const { blockElements, blockBytes } = ggmlTypeByName(type)!;
    // More blocks than one kernel call stages (65536 values), a count that does not divide it.
    const blocks = Math.ceil(70000 / blockElements) + 3;
    const rng = new Rng(16 + blockBytes);
    const src = new Uint8Array(blocks * blockBytes + 1);
    for (let i = 0; i < src.length; i++) src[i] = rng.int(256);
    // Scales of ordinary size in most blocks (random f16 scales are mostly huge or tiny), any bits in the rest.
    const scaleAt: Readonly<Record<string, readonly number[]>> = { Q4_0: [0], Q8_0: [0], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208] };
    for (let b = 0; b < blocks; b++) {
      if (b % 4 === 3) continue;
      for (const o of scaleAt[type]!) {
        src[1 + b * blockBytes + o] = rng.int(256);
        src[1 + b * blockBytes + o + 1] = 0x1c + rng.int(8) + (rng.int(2) << 7);
      }
    }
    const decode = (wasm: boolean, withVariance: boolean) => {
      const out = new Float32Array(blocks * blockElements + 2), variance = withVariance ? new Float32Array(out.length) : null;
      useWasmDequantizers(wasm);
      try {
        dequantizeBlocks(type, src, 1, blocks, out, 2, variance);
      } finally {
        useWasmDequantizers(true);
      }
      return { out, variance };
    };
    const js = decode(false, true), wasm = decode(true, true), wasmValuesOnly = decode(true, false);
    sameFloat32(wasm.out, js.out, `${type} value`);
    sameFloat32(wasm.variance!, js.variance!, `${type} variance`);
    sameFloat32(wasmValuesOnly.out, js.out, `${type} value (no variance asked)`);
    assert.ok(js.out.some((v) => v !== 0 && Number.isFinite(v)), 'the blocks decode to ordinary values');
  });
}
