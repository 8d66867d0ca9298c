/** Splitting a fused tensor (qkv, gate + up) into the row ranges of the roles it holds. */
import { BadInputError } from '../io/errors.js';
import type { FusedLayout } from './names.js';
import { storedShape, tensorInfo } from './read-role.js';
import type { LayerTensor } from './table-match.js';
import type { LayerRole, ModelDims, RoleRef, TensorSource } from './types.js';

/** The roles each fused layout holds, in the order of splitFused's result. */
export const FUSED_ROLES: Readonly<Record<FusedLayout, readonly LayerRole[]>> = {
  qkv: ['q', 'k', 'v'],
  qkv_thirds: ['q', 'k', 'v'],
  qkv_per_head: ['q', 'k', 'v'],
  gate_up: ['gate', 'up'],
};

/** A layer's roles as mapModel collects them. */
export type MutableLayer = Partial<Record<LayerRole, RoleRef>>;

/** Row ranges of the roles held by a fused tensor, checked against its size. */
export function splitFused(source: TensorSource, t: LayerTensor, layout: FusedLayout, dims: ModelDims): MutableLayer {
  const transposed = t.pattern.transposed === true;
  const [storedRows, storedCols] = storedShape(tensorInfo(source, t.name));
  const outRows = transposed ? storedCols : storedRows;
  const ref = (rows: readonly [number, number]): RoleRef => ({ tensor: t.name, rows, ...(transposed ? { transposed: true } : {}) });
  const expect = (expected: number, what: string): void => {
    if (outRows !== expected) {
      throw new BadInputError(`fused tensor has ${outRows} output rows, expected ${expected} (${what})`, { tensor: t.name });
    }
  };
  switch (layout) {
    case 'gate_up': {
      const inter = dims.intermediate ?? outRows / 2;
      expect(2 * inter, `gate + up of ${inter} rows each`);
      return { gate: ref([0, inter]), up: ref([inter, 2 * inter]) };
    }
    case 'qkv_thirds': {
      if (outRows % 3 !== 0) expect(3 * Math.round(outRows / 3), 'q, k, v of equal size');
      const third = outRows / 3;
      return { q: ref([0, third]), k: ref([third, 2 * third]), v: ref([2 * third, outRows]) };
    }
    case 'qkv': {
      if (dims.heads === null || dims.headDim === null) {
        // Without head counts, only equal thirds (no grouped-query attention) can be assumed.
        if (outRows % 3 !== 0) expect(3 * Math.round(outRows / 3), 'q, k, v of equal size; config.json has no head counts');
        const third = outRows / 3;
        return { q: ref([0, third]), k: ref([third, 2 * third]), v: ref([2 * third, outRows]) };
      }
      const q = dims.heads * dims.headDim;
      const kv = (dims.kvHeads ?? dims.heads) * dims.headDim;
      expect(q + 2 * kv, `${dims.heads} query and ${dims.kvHeads} kv heads of ${dims.headDim}`);
      return { q: ref([0, q]), k: ref([q, q + kv]), v: ref([q + kv, q + 2 * kv]) };
    }
    case 'qkv_per_head': {
      if (dims.heads === null || dims.headDim === null) {
        throw new BadInputError('splitting query_key_value needs num_attention_heads in config.json', { tensor: t.name });
      }
      const { heads, headDim } = dims;
      expect(3 * heads * headDim, `${heads} heads x [q, k, v] of ${headDim}`);
      const part = (k: number): Array<readonly [number, number]> =>
        Array.from({ length: heads }, (_, h) => [(3 * h + k) * headDim, (3 * h + k + 1) * headDim] as const);
      return {
        q: { tensor: t.name, rowRanges: part(0) },
        k: { tensor: t.name, rowRanges: part(1) },
        v: { tensor: t.name, rowRanges: part(2) },
      };
    }
  }
}

