/**
 * How verify reads the models: the residual evidence (embedding sketches), each layer's modules
 * and norm gains (whole, or on the residual sample), and the memory bounds that reading implies.
 */
import type { RoleReader } from '../arch/reader.js';
import { LINEAR_ROLES, MODULE_NAME, type LayerRole, type ModuleRole } from '../arch/types.js';
import { IncompatibleModelsError, LineageError } from '../io/errors.js';
import { residualColumns, residualColumnsOfBlocks, type ResidualEvidence } from '../align/llama-block.js';
import type { NoisyMatrix } from '../noise/noisy-matrix.js';
import { residualSampleWidth, tokenSample } from '../align/residual-sample.js';
import type { BufferPool } from './buffer-pool.js';
import { onCommonGrid, type ReadLayer } from './jobs.js';
import { FORMED_LAST, MODULES, PART_ROLES, READ_NORM, type LayerPart } from './layer.js';
import { isLayerNormModel } from './block.js';

/** Values of a layer role of `reader` as analysed: whole, or on a residual sample of `width` dimensions (0 when absent). */
function roleElements(reader: RoleReader, index: number, role: LayerRole, width: number | null): number {
  const shape = reader.map.layers[index]?.[role]?.shape;
  if (!shape) return 0;
  return width === null ? shape[0] * shape[1] : (shape[0] * shape[1] / Math.max(1, reader.map.dims.hidden)) * width;
}

/** A pool buffer for a role's decode, whole or on a residual sample of `width` dimensions. */
function decodeBuffer(reader: RoleReader, index: number, role: LayerRole, width: number | null, pool: BufferPool | null): Float32Array | undefined {
  const elements = roleElements(reader, index, role, width);
  return pool && elements > 0 ? pool.float32(elements) : undefined;
}

export type NormPair = { base: NoisyMatrix; candidate: NoisyMatrix };
export interface LayerNorms {
  readonly input: NormPair;
  readonly post: NormPair;
}

/** A layer's norm gains of both models, whole, on the grid they are compared on. */
export function readNorms(base: RoleReader, candidate: RoleReader, index: number): LayerNorms {
  const norm = (role: 'input_norm' | 'post_norm') => onCommonGrid(base.layer(index, role), candidate.layer(index, role));
  return { input: norm('input_norm'), post: norm('post_norm') };
}


/** Entries `dims` of a residual-indexed column (a norm gain). */
function pickDims(m: NoisyMatrix, dims: Int32Array): NoisyMatrix {
  return { rows: dims.length, cols: 1, values: Float64Array.from(dims, (d) => m.values[d]!), variance: Float32Array.from(dims, (d) => m.variance[d]!) };
}

const MODULE_ROLES = MODULES.map(([role]) => role);

/** Each linear's bias and the norms' betas of both models, whole, on the grid they are compared on (roles without one absent). */
export function readBiases(base: RoleReader, candidate: RoleReader, index: number, roles: readonly LayerRole[]): { base: Partial<Record<LayerRole, NoisyMatrix>>; candidate: Partial<Record<LayerRole, NoisyMatrix>> } {
  const out = { base: {} as Partial<Record<LayerRole, NoisyMatrix>>, candidate: {} as Partial<Record<LayerRole, NoisyMatrix>> };
  for (const role of [...roles, 'input_norm', 'post_norm'] as const) {
    const wb = base.layerBias?.(index, role) ?? null, wc = candidate.layerBias?.(index, role) ?? null;
    if (!wb && !wc) continue;
    if (!wb || !wc) {
      const [has, lacks] = wb ? [base, candidate] : [candidate, base];
      throw new IncompatibleModelsError(`${has.name} stores a bias for ${role} of layer ${index} and ${lacks.name} does not`);
    }
    const pair = onCommonGrid(wb, wc);
    out.base[role] = pair.base;
    out.candidate[role] = pair.candidate;
  }
  return out;
}

/**
 * One model's layer as read: whole (decoded into pool buffers when there is a pool), or on its
 * residual sample `dims` (stored dimensions; readers' columns, writers' rows), only those read.
 * `roles`: the block's linear roles (the residual sample serves Llama-style blocks only).
 */
export function readLayer(
  reader: RoleReader, index: number, norms: { input: NoisyMatrix; post: NoisyMatrix }, dims: Int32Array | null, pool: BufferPool | null,
  roles: readonly LayerRole[] = MODULE_ROLES, biases?: Partial<Record<LayerRole, NoisyMatrix>>,
): ReadLayer {
  const modules = Object.fromEntries(reader.storageOrder(index, roles).map((role) => {
    const reads = dims ? READ_NORM[MODULE_NAME[role as ModuleRole]] : null;
    return [
      role,
      dims
        ? reader.layerPart(index, role, reads ? { rows: null, cols: dims } : { rows: dims, cols: null }, decodeBuffer(reader, index, role, dims.length, pool))
        : reader.layer(index, role, decodeBuffer(reader, index, role, null, pool)),
    ];
  })) as ReadLayer['modules'];
  return { modules, inputNorm: dims ? pickDims(norms.input, dims) : norms.input, postNorm: dims ? pickDims(norms.post, dims) : norms.post, ...(biases ? { biases } : {}) };
}

/**
 * Values of the largest job of `reader` as analysed (whole, or on a residual sample of `width`
 * dimensions): a part of a Llama-style layer (jobs.ts), a LayerNorm layer whole. `formedAtOnce`:
 * of a part's analysis form, whose role formed last (FORMED_LAST) takes the others' memory.
 */
function largestJobElements(reader: RoleReader, width: number | null, formedAtOnce = false): number {
  const jobs: ReadonlyArray<{ roles: readonly LayerRole[]; last: LayerRole | null }> = isLayerNormModel(reader.map)
    ? [{ roles: LINEAR_ROLES, last: null }]
    : (Object.keys(PART_ROLES) as LayerPart[]).map((part) => ({ roles: PART_ROLES[part], last: formedAtOnce ? FORMED_LAST[part] : null }));
  let largest = 0;
  for (let index = 0; index < reader.map.layers.length; index++) {
    const elements = (roles: readonly LayerRole[]) => roles.reduce((total, role) => total + roleElements(reader, index, role, width), 0);
    for (const { roles, last } of jobs) {
      largest = Math.max(largest, last ? Math.max(elements(roles.filter((role) => role !== last)), elements([last])) : elements(roles));
    }
  }
  return largest;
}

/**
 * Memory bounds of one verify run, from the largest job (as analysed: whole, or on the residual
 * sample). The calling thread's pool keeps the float32 decodes (4 bytes a value) of one job of
 * both models, given back by an analyst once it built the analysis form, for the next job read.
 * Each analyst keeps the analysis form (8 + 4 bytes a value) a job holds at once: the MLP's gate
 * and up, whose memory down's form takes once they are fitted unchanged (layer.ts, MlpDown).
 */
export function memoryPlan(base: RoleReader, candidate: RoleReader, width: number | null): { decodeBytes: number; analysisBytes: number } {
  // The architectures were compared equal: both models' largest job is the same job.
  const elements = (formedAtOnce: boolean) => largestJobElements(base, width, formedAtOnce) + largestJobElements(candidate, width, formedAtOnce);
  return { decodeBytes: 4 * elements(false), analysisBytes: 12 * elements(true) };
}

/**
 * Bytes one layer analyst needs on a model (verify's --workers default): a job's analysis form of
 * both models with the analysis' work arrays (about twice that, measured by the verify
 * benchmark), and the float32 decodes of the job it was sent. The calling thread holds one more
 * job's decodes, read ahead.
 */
export function analystBytes(reader: RoleReader): number {
  // LayerNorm blocks are analysed whole, whatever their width.
  const largest = largestJobElements(reader, isLayerNormModel(reader.map) ? null : residualSampleWidth(reader.map.dims.hidden));
  return 2 * (2 * 12 * largest) + 2 * 4 * largest;
}

/**
 * One model's residual evidence: the columns of the embedding-like matrices, on a sample of the
 * token rows when the vocabulary is large (the same rows in both models: obfuscation permutes
 * the residual, not the vocabulary).
 */
function loadResidualEvidence(reader: RoleReader, withHead: boolean, finalNorm: Float64Array | null, tokens: Int32Array | null): ResidualEvidence {
  const columns = (role: 'embed' | 'lm_head' | 'patch_embed') => {
    const hidden = reader.map.global[role]?.shape?.[1];
    // A patch projection plays the token embedding (its rows are pixel values, never permuted).
    const sketchAs = role === 'patch_embed' ? 'embed' : role;
    if (!tokens || hidden === undefined || role === 'patch_embed') return residualColumns(reader.global(role), sketchAs);
    return residualColumnsOfBlocks(tokens.length, hidden, tokenBlocks(reader, role, tokens), sketchAs);
  };
  const embed = reader.map.global.embed ? 'embed' : reader.map.global.patch_embed ? 'patch_embed' : null;
  if (!embed) throw new LineageError(`verify aligns the residual stream by the embedding: ${reader.name} has no token embedding or patch projection`);
  return { embed: columns(embed), lmHead: withHead ? columns('lm_head') : null, finalNorm };
}

/** Token rows read per block: the sampled rows are sketched a block at a time, never all in memory. */
const TOKEN_BLOCK = 256;

function* tokenBlocks(reader: RoleReader, role: 'embed' | 'lm_head', tokens: Int32Array): Generator<{ rowStart: number; rowEnd: number; data: Float32Array }> {
  for (let t = 0; t < tokens.length; t += TOKEN_BLOCK) {
    const rows = tokens.subarray(t, Math.min(tokens.length, t + TOKEN_BLOCK));
    yield { rowStart: t, rowEnd: t + rows.length, data: reader.globalPart(role, { rows, cols: null }).data };
  }
}

export function loadGlobals(base: RoleReader, candidate: RoleReader, seed: number): { base: ResidualEvidence; candidate: ResidualEvidence } {
  const tied = base.map.tiedEmbeddings || candidate.map.tiedEmbeddings || !base.map.global.lm_head || !candidate.map.global.lm_head;
  // The final norms on the common grid, as every layer weight: an f32 parent's equals its bf16 child's.
  const norms = base.map.global.final_norm && candidate.map.global.final_norm
    ? onCommonGrid(base.global('final_norm'), candidate.global('final_norm')) : null;
  const vocabs = [base, candidate].map((r) => r.map.global.embed?.shape?.[0] ?? 0);
  const vocab = Math.min(...vocabs);
  // A resized vocabulary is compared on the shared tokens only (all of them when few).
  const shared = vocabs[0] !== vocabs[1] ? Int32Array.from({ length: vocab }, (_, t) => t) : null;
  const tokens = vocab > 0 ? tokenSample(vocab, seed) ?? shared : null;
  return {
    base: loadResidualEvidence(base, !tied, norms ? norms.base.values : null, tokens),
    candidate: loadResidualEvidence(candidate, !tied, norms ? norms.candidate.values : null, tokens),
  };
}
