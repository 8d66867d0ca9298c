/**
 * What tells two sketched models apart for the tree: the content fingerprint (headers and sampled
 * blocks, io/fingerprint.ts) together with every matrix's sketch and norms. The fingerprint alone
 * samples three blocks a file, which a LoRA child often shares with its base (embeddings first,
 * untouched layers last), so it cannot decide that two models are the same, nor break ties
 * between them; the sketch sees every linear weight.
 */
import { createHash } from 'node:crypto';
import type { ModelSketch } from './types.js';

const memo = new WeakMap<ModelSketch, string>();

export function sketchIdentity(sketch: ModelSketch): string {
  let id = memo.get(sketch);
  if (id === undefined) {
    const hash = createHash('sha256').update(`fingerprint ${sketch.fingerprint}\n`);
    for (const m of sketch.matrices) {
      hash.update(`${m.layer} ${m.role} ${m.rows}x${m.cols} ${m.storedDtype}\n`);
      for (const v of m.views) {
        hash.update(`${v.dtype} ${v.squaredNorm}\n`);
        hash.update(new Uint8Array(v.sketch.buffer, v.sketch.byteOffset, v.sketch.byteLength));
      }
    }
    for (const n of sketch.neurons) {
      hash.update(`neurons ${n.layer}\n`);
      hash.update(new Uint8Array(n.gate.buffer, n.gate.byteOffset, n.gate.byteLength));
      hash.update(new Uint8Array(n.up.buffer, n.up.byteOffset, n.up.byteLength));
    }
    id = hash.digest('hex');
    memo.set(sketch, id);
  }
  return id;
}
