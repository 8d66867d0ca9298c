/** The shape every role must have given the model's dims, checked with one clear error per malformed weight. */
import { BadInputError } from '../io/errors.js';
import type { MutableLayer } from './fused.js';
import { tensorInfo } from './read-role.js';
import type { GlobalRole, LayerRole, ModelDims, RoleRef, TensorSource } from './types.js';

/** (out, in) shapes each role must have given the dims; null = not known, not checked. */
function expectedShape(role: LayerRole | GlobalRole, dims: ModelDims): [number | null, number | null] {
  const { hidden, heads, kvHeads, headDim, intermediate, vocab } = dims;
  const qRows = heads !== null && headDim !== null ? heads * headDim : null;
  const kvRows = kvHeads !== null && headDim !== null ? kvHeads * headDim : null;
  switch (role) {
    case 'q': return [qRows, hidden];
    case 'k': case 'v': return [kvRows, hidden];
    case 'o': return [hidden, qRows];
    case 'gate': case 'up': case 'fc_in': return [intermediate, hidden];
    case 'down': case 'fc_out': return [hidden, intermediate];
    case 'input_norm': case 'post_norm': case 'final_norm': return [hidden, 1];
    case 'embed': case 'lm_head': return [vocab, hidden];
    case 'patch_embed': return [null, hidden];
  }
}

export function checkShapes(
  source: TensorSource,
  dims: ModelDims,
  global: Partial<Record<GlobalRole, RoleRef>>,
  layers: readonly MutableLayer[],
): void {
  const check = (role: LayerRole | GlobalRole, ref: RoleRef, where: string): void => {
    // Viewed as 2-D any tensor has a shape; a weight that is not stored as one is still malformed.
    const info = tensorInfo(source, ref.tensor);
    const storedRank = role === 'input_norm' || role === 'post_norm' || role === 'final_norm' ? 1 : role === 'patch_embed' ? 4 : 2;
    if (info.shape.length !== storedRank) {
      throw new BadInputError(`${role} weight${where} must be ${storedRank}-D, got shape [${info.shape.join(', ')}]`, { tensor: ref.tensor, file: info.file });
    }
    const [rows, cols] = ref.shape!;
    const [wantRows, wantCols] = expectedShape(role, dims);
    if ((wantRows !== null && rows !== wantRows) || (wantCols !== null && cols !== wantCols)) {
      const want = `${wantRows ?? '?'}x${wantCols ?? '?'}`;
      throw new BadInputError(
        `${role} weight${where} is ${rows}x${cols} but the model's dims (config.json or embedding) need ${want}`,
        { tensor: ref.tensor, file: tensorInfo(source, ref.tensor).file },
      );
    }
  };
  for (const [role, ref] of Object.entries(global) as [GlobalRole, RoleRef][]) check(role, ref, '');
  layers.forEach((layer, i) => {
    for (const [role, ref] of Object.entries(layer) as [LayerRole, RoleRef][]) check(role, ref, ` of layer ${i}`);
  });
}
