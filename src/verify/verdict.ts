/**
 * The verdict of a verify run: from the independence test, the norm growth and the per-module
 * evidence to a relation with its reason, the LoRA read, and the adapter caveat.
 */
import type { IndependenceTest } from '../align/independence.js';
import type { AdapterBase, LayerEvidence, ModuleName, Relation, VerifyResult } from './types.js';
import { MODULES } from './layer.js';
import { undirectedFullFineTune } from './layernorm-direction.js';

/** Significance levels of the independence test: above UNRELATED_P no shared origin is claimed. */
export const UNRELATED_P = 0.01;
export const RELATED_P = 1e-3;
/**
 * Norm growth g = (|C|^2 - |B|^2) / |C - B|^2 is ~1 when C = B + an update independent of B, ~0 for
 * two equally trained siblings and ~-1 when B descends from C: the midpoint 1/2 decides.
 */
export const DERIVED_GROWTH = 0.5;

/** The most common value (ties: the smaller). */
function mode(values: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0]!, bestCount = 0;
  for (const [v, c] of [...counts].sort((a, b) => a[0] - b[0])) if (c > bestCount) [best, bestCount] = [v, c];
  return best;
}

/** The declared base of an adapter against BASE's name: the declared name's last path component (a hub id's model name, a folder's name). */
export function declaredAdapterBase(declared: string | null, baseName: string): AdapterBase {
  if (declared === null || declared.trim() === '') return { declared: null, matchesBase: null };
  const last = declared.trim().replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? '';
  return { declared, matchesBase: last.toLowerCase() === baseName.toLowerCase() };
}

/** What an adapter verdict rests on, for its reason line. */
export function adapterCaveat(adapterBase: AdapterBase): string {
  const declared = adapterBase.declared === null
    ? 'it declares no base'
    : `it declares base "${adapterBase.declared}", ${adapterBase.matchesBase ? 'which is' : 'which is not'} BASE`;
  return `this assumes the adapter is applied to BASE (it was merged onto BASE; LoRA factors carry little trace of the base they were trained on); ${declared}`;
}

export function formatP(log10P: number): string {
  return log10P > -300 ? `p = ${(10 ** log10P).toExponential(1)}` : `p = 10^${log10P.toFixed(0)}`;
}

export interface Judgement {
  relation: Relation;
  reason: string;
  lora: VerifyResult['lora'];
  fullFineTune: boolean;
}

/**
 * Fewest informative neurons (see independence.ts) the test must have used for its verdict to
 * stand: with fewer, neither a shared origin nor independence is claimed.
 */
export const MIN_INFORMATIVE_NEURONS = 32;

/**
 * A LoRA rank read through quantization is a lower bound when, in at least half the changed
 * modules, the weakest direction counted stands within this factor of the noise threshold: the
 * spectrum runs into the floor instead of ending above it (a rank read whole keeps a clear gap).
 */
const FLOOR_GAP = 2;

export function judge(
  test: IndependenceTest, growth: number, layers: readonly LayerEvidence[], quantization: NonNullable<VerifyResult['quantization']>,
  nativeName: (module: ModuleName) => string = (module) => module, layerNorm = false,
): Judgement {
  const log10P = test.log10PValue;
  const p = formatP(log10P);
  const used = `${test.rowsUsed} of ${test.rows} neurons informative`;
  if (test.rowsUsed < MIN_INFORMATIVE_NEURONS) {
    return {
      relation: 'inconclusive',
      reason: `too few informative MLP neurons to test a shared origin (${used}; zero, constant or repeated rows tell no match apart)`,
      lora: null, fullFineTune: false,
    };
  }
  if (log10P > Math.log10(UNRELATED_P)) {
    return { relation: 'unrelated', reason: `no sign of a shared initialisation (${p} under independence, ${used})`, lora: null, fullFineTune: false };
  }
  if (log10P > Math.log10(RELATED_P)) {
    return { relation: 'inconclusive', reason: `weak evidence of a shared initialisation (${p}, ${used}): neither independence nor kinship is clear`, lora: null, fullFineTune: false };
  }
  const all = layers.flatMap((l) => l.modules.map((m) => ({ layer: l.layer, ...m })));
  const changed = all.filter((m) => m.status !== 'unchanged');
  const pruned = { base: 0, candidate: 0, total: 0 };
  for (const l of layers) {
    pruned.base += l.prunedNeurons.base;
    pruned.candidate += l.prunedNeurons.candidate;
  }
  const neurons = test.rows;
  // Zeroed neurons never come back in training: the model that has them zeroed is the descendant.
  const prunedNote = pruned.candidate > 0 ? `${pruned.candidate} of ${neurons} MLP neurons pruned (zeroed)` : '';
  if (pruned.base > 0 && pruned.candidate === 0) {
    return {
      relation: 'related',
      reason: `shared origin (${p}), but BASE looks derived from CANDIDATE: ${pruned.base} of ${neurons} MLP neurons are zeroed in BASE only (pruning is never undone by training)`,
      lora: null, fullFineTune: changed.some((m) => m.status === 'full'),
    };
  }
  if (changed.length === 0) {
    if (pruned.candidate > 0 && pruned.base === 0) {
      return { relation: 'derived', reason: `CANDIDATE is BASE with ${prunedNote}, otherwise the same weights after alignment (${p})`, lora: null, fullFineTune: false };
    }
    const copy = quantizedCopy(quantization);
    return { relation: 'derived', reason: copy ? `same weights as BASE beyond the quantization floor: ${copy} (${p})` : `same weights as BASE after alignment (a copy; ${p})`, lora: null, fullFineTune: false };
  }
  const fullFineTune = changed.some((m) => m.status === 'full');
  const prunedOnly = pruned.candidate > 0 && pruned.base === 0;
  // LayerNorm families: a dense change claims no direction (layernorm-direction.ts).
  if (layerNorm && fullFineTune && !prunedOnly) return { relation: 'related', reason: undirectedFullFineTune(growth, p), lora: null, fullFineTune };
  if (growth < -DERIVED_GROWTH) {
    return { relation: 'related', reason: `shared origin (${p}), but BASE looks derived from CANDIDATE (norm growth ${growth.toFixed(2)})`, lora: null, fullFineTune };
  }
  if (growth <= DERIVED_GROWTH && !prunedOnly) {
    return { relation: 'related', reason: `shared origin (${p}), but neither descends from the other: siblings or cousins (norm growth ${growth.toFixed(2)})`, lora: null, fullFineTune };
  }
  let lora: VerifyResult['lora'] = null;
  if (!fullFineTune) {
    // The noise threshold leaves no spurious ranks, so every changed module is a target, also
    // when the adapter covered only some layers.
    const targets = MODULES.map(([, name]) => name).filter((name) => changed.some((m) => m.module === name));
    const ranks = changed.filter((m) => targets.includes(m.module)).map((m) => m.rank);
    const loraLayers = [...new Set(changed.map((m) => m.layer))].sort((a, b) => a - b);
    const atFloor = changed.filter((m) => (m.singularValues[m.rank - 1] ?? 0) < FLOOR_GAP).length;
    const quantized = quantization.base?.quantized || quantization.candidate?.quantized;
    const nativeTargets = [...new Set(targets.map(nativeName))];
    const native = nativeTargets.join(',') !== targets.join(',') ? { nativeTargets } : {};
    lora = { rank: mode(ranks), targets, ...native, layers: loraLayers, stacked: false, ...(quantized && 2 * atFloor >= changed.length ? { rankIsLowerBound: true as const } : {}) };
  }
  const what = lora ? `LoRA rank ${lora.rankIsLowerBound ? 'at least ' : ''}${lora.rank} on ${lora.targets.join(', ')}` : 'a full fine-tune';
  const direction = prunedOnly ? `${prunedNote}; norm growth ${growth.toFixed(2)}` : `norm growth ${growth.toFixed(2)}`;
  return { relation: 'derived', reason: `CANDIDATE is BASE plus ${what}${prunedOnly ? `, with ${prunedNote}` : ''} (${p}, ${direction})`, lora, fullFineTune };
}

/** "a quantized copy (Q8_0)" naming the quantized side (the candidate first), or null when neither is quantized. */
function quantizedCopy(quantization: NonNullable<VerifyResult['quantization']>): string | null {
  const { base, candidate } = quantization;
  if (candidate?.quantized) return `CANDIDATE is a quantized copy (${candidate.fileType ?? Object.keys(candidate.tensorTypes).join(', ')})`;
  if (base?.quantized) return `BASE is a quantized copy (${base.fileType ?? Object.keys(base.tensorTypes).join(', ')})`;
  return null;
}
