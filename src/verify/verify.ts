import { compareArchitectures } from '../arch/map.js';
import type { RoleReader } from '../arch/reader.js';
import type { LayerRole, Weight } from '../arch/types.js';
import { IncompatibleModelsError, LineageError } from '../io/errors.js';
import { combineIndependence, independenceFromSimilarities, type LayerIndependence } from '../align/independence.js';
import { attentionInvariants } from '../align/invariants.js';
import {
  alignHeads, alignMlp, alignResidual, applyHeads, applyMlp, applyResidual, applyResidualToGlobals,
  foldNorms, neuronSimilarities, type GlobalWeights, type HeadLayout, type LayerWeights, type ResidualAlignment,
} from '../align/llama.js';
import { lowRankDelta, type GaugeFreedom, type LowRankResult } from '../align/lowrank.js';
import { coarserGrid, noisyFromWeight, type NoisyMatrix } from '../align/noisy.js';
import { Rng } from '../linalg/rng.js';
import { MomentAccumulator } from '../stats/moments.js';
import type {
  LayerEvidence, ModelSummary, ModuleEvidence, ModuleName, Relation, TransformFound, VerifyResult,
} from './types.js';

/** Significance levels of the independence test: above UNRELATED_P no shared origin is claimed. */
export const UNRELATED_P = 0.01;
export const RELATED_P = 1e-3;
/**
 * Norm growth g = (|C|^2 - |B|^2) / |C - B|^2 is ~1 when C = B + an update independent of B, ~0 for
 * two equally trained siblings and ~-1 when B descends from C: the midpoint 1/2 decides.
 */
export const DERIVED_GROWTH = 0.5;
/** One-token probe states per layer for the invariants and the Origin-Tracer probe rank. */
const PROBES = 256;

const MODULES: ReadonlyArray<readonly [Exclude<LayerRole, 'input_norm' | 'post_norm' | 'fc_in' | 'fc_out'>, ModuleName]> = [
  ['q', 'q_proj'], ['k', 'k_proj'], ['v', 'v_proj'], ['o', 'o_proj'], ['gate', 'gate_proj'], ['up', 'up_proj'], ['down', 'down_proj'],
];

/**
 * The diagonal scalings each role admits without changing the function: reader columns through
 * norm folding; Q/K rows per RoPE pair, V rows with O columns, up rows with down columns.
 * Residual-side rows (O, down) and gate rows (SiLU is not scale-equivariant) admit none.
 */
const GAUGE: Readonly<Record<ModuleName, GaugeFreedom>> = {
  q_proj: { rows: true, cols: true },
  k_proj: { rows: true, cols: true },
  v_proj: { rows: true, cols: true },
  o_proj: { rows: false, cols: true },
  gate_proj: { rows: false, cols: true },
  up_proj: { rows: true, cols: true },
  down_proj: { rows: false, cols: true },
};

export interface VerifyOptions {
  readonly seed?: number;
  /** Called after each layer (for progress displays). */
  readonly onLayer?: (done: number, total: number) => void;
}

function headLayout(reader: RoleReader): HeadLayout {
  const d = reader.map.dims;
  if (!d.heads || !d.kvHeads || !d.headDim) {
    throw new LineageError(`verify needs attention head counts: ${reader.name} has none in config.json`);
  }
  return { heads: d.heads, kvHeads: d.kvHeads, headDim: d.headDim };
}

function requireDecoder(reader: RoleReader): void {
  const layer0 = reader.map.layers[0] ?? {};
  const missing = MODULES.map(([role]) => role).filter((role) => !layer0[role]);
  if (missing.length > 0 || !layer0.input_norm || !layer0.post_norm) {
    throw new LineageError(
      `verify supports Llama-style decoders (q, k, v, o, gate, up, down with RMSNorms); ${reader.name} (family ${reader.map.family}) lacks ${[...missing, ...(layer0.input_norm ? [] : ['input_norm'])].join(', ') || 'post_norm'}`,
    );
  }
}

/**
 * One role of both models, each on the grid they are compared on: a model stored finer than the
 * other (f32 vs bf16) is rounded onto the coarser grid first.
 */
function readPair(base: RoleReader, candidate: RoleReader, read: (r: RoleReader) => Weight): { base: NoisyMatrix; candidate: NoisyMatrix } {
  const wb = read(base);
  const wc = read(candidate);
  const grid = coarserGrid(wb.dtype, wc.dtype);
  return {
    base: noisyFromWeight(wb, grid !== wb.dtype ? grid : null),
    candidate: noisyFromWeight(wc, grid !== wc.dtype ? grid : null),
  };
}

function loadLayer(base: RoleReader, candidate: RoleReader, index: number): { base: LayerWeights; candidate: LayerWeights } {
  const pair = (role: LayerRole) => readPair(base, candidate, (r) => r.layer(index, role));
  const [q, k, v, o, gate, up, down, inputNorm, postNorm] = (['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'input_norm', 'post_norm'] as const).map(pair);
  const side = (s: 'base' | 'candidate'): LayerWeights => ({
    q: q![s], k: k![s], v: v![s], o: o![s], gate: gate![s], up: up![s], down: down![s],
    inputNorm: inputNorm![s].values, inputNormVariance: inputNorm![s].variance, postNorm: postNorm![s].values,
  });
  return { base: side('base'), candidate: side('candidate') };
}

function loadGlobals(base: RoleReader, candidate: RoleReader): { base: GlobalWeights; candidate: GlobalWeights } {
  const embed = readPair(base, candidate, (r) => r.global('embed'));
  const tied = base.map.tiedEmbeddings || candidate.map.tiedEmbeddings || !base.map.global.lm_head || !candidate.map.global.lm_head;
  const head = tied ? null : readPair(base, candidate, (r) => r.global('lm_head'));
  const norm = base.map.global.final_norm && candidate.map.global.final_norm ? readPair(base, candidate, (r) => r.global('final_norm')) : null;
  const side = (s: 'base' | 'candidate'): GlobalWeights => ({
    embed: embed[s],
    lmHead: head ? head[s] : null,
    finalNorm: norm ? norm[s].values : null,
  });
  return { base: side('base'), candidate: side('candidate') };
}

function maxAbsLog(values: ArrayLike<number>, from = 0, to = values.length): number {
  let m = 0;
  for (let i = from; i < to; i++) {
    const v = Math.abs(values[i]!);
    if (v > 0) m = Math.max(m, Math.abs(Math.log(v)));
  }
  return m;
}

function isIdentity(order: ArrayLike<number>): boolean {
  for (let i = 0; i < order.length; i++) if (order[i] !== i) return false;
  return true;
}

function summarize(reader: RoleReader, adapter: ModelSummary['adapter']): ModelSummary {
  return { name: reader.name, path: reader.path, dtypes: reader.dtypes, parameters: reader.parameters, adapter };
}

/** The most common value (ties: the smaller). */
function mode(values: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0]!, bestCount = 0;
  for (const [v, c] of [...counts].sort((a, b) => a[0] - b[0])) if (c > bestCount) [best, bestCount] = [v, c];
  return best;
}

export function verifyModels(
  base: RoleReader, candidate: RoleReader, options: VerifyOptions = {},
  adapters: { base?: ModelSummary['adapter']; candidate?: ModelSummary['adapter'] } = {},
): VerifyResult {
  const started = performance.now();
  let readSeconds = 0, alignSeconds = 0;
  const timed = <T>(f: () => T, add: (s: number) => void): T => {
    const t0 = performance.now();
    const out = f();
    add((performance.now() - t0) / 1000);
    return out;
  };
  const problems = compareArchitectures(base.map, candidate.map);
  if (problems.length > 0) {
    throw new IncompatibleModelsError(`${base.name} and ${candidate.name} have different architectures: ${problems.join('; ')}`);
  }
  requireDecoder(base);
  requireDecoder(candidate);
  const layout = headLayout(base);
  const seed = options.seed ?? 1;

  const globals = timed(() => loadGlobals(base, candidate), (s) => (readSeconds += s));
  const residual: ResidualAlignment = timed(() => alignResidual(globals.base, globals.candidate), (s) => (alignSeconds += s));
  const alignedGlobals = applyResidualToGlobals(globals.candidate, residual);
  // Probes: more than any LoRA rank sum r_v + r_o that is still called low-rank in practice.
  const probes = new Rng(seed + 99).gaussianMatrix(Math.min(globals.base.embed.cols, PROBES), globals.base.embed.cols);

  const moments: [MomentAccumulator, MomentAccumulator] = [new MomentAccumulator(), new MomentAccumulator()];
  const layers: LayerEvidence[] = [];
  const independence: LayerIndependence[] = [];
  const transformLayers: TransformFound['layers'][number][] = [];
  const qualities: number[] = [residual.quality];
  let normFold = alignedGlobals.finalNorm && globals.base.finalNorm ? maxAbsLog(ratio(alignedGlobals.finalNorm, globals.base.finalNorm)) : 0;
  let growthNum = 0, growthDen = 0;
  const layerCount = base.map.layers.length;

  for (let index = 0; index < layerCount; index++) {
    const loaded = timed(() => loadLayer(base, candidate, index), (s) => (readSeconds += s));
    const b = loaded.base;
    const t0 = performance.now();
    let c = applyResidual(loaded.candidate, residual);
    normFold = Math.max(normFold, maxAbsLog(ratio(c.inputNorm, b.inputNorm)), maxAbsLog(ratio(c.postNorm, b.postNorm)));
    foldNorms(b);
    foldNorms(c);
    // One pair of neuron similarity matrices serves the independence test and the alignment.
    const sims = neuronSimilarities(b, c, seed + 3 * index);
    independence.push(independenceFromSimilarities(index, sims, b.gate.rows));
    const mlp = alignMlp(sims, b.gate.rows);
    c = applyMlp(c, mlp);
    const heads = alignHeads(b, c, layout, seed + 2000 + index);
    c = applyHeads(c, heads, layout);
    qualities.push(mlp.quality, heads.quality);
    alignSeconds += (performance.now() - t0) / 1000;

    const modules: ModuleEvidence[] = [];
    const fits = new Map<ModuleName, LowRankResult>();
    for (const [role, name] of MODULES) {
      const x = b[role] as NoisyMatrix;
      const y = c[role] as NoisyMatrix;
      const fit = lowRankDelta(x, y, { gauge: GAUGE[name] });
      fits.set(name, fit);
      addMoments(moments, x, y, fit);
      const status = fit.rank === 0 ? 'unchanged' : fit.lowRank ? 'low-rank' : 'full';
      if (status !== 'unchanged') {
        // A low-rank delta pins the gauge (the fit recovers any rescaling exactly); a dense one
        // does not, so its growth is measured on the stored (unfolded) weights as aligned.
        const g = status === 'low-rank' ? fit : unfoldedNorms(x, y, READ_NORM[name] === 'input' ? [b.inputNorm, c.inputNorm] : READ_NORM[name] === 'post' ? [b.postNorm, c.postNorm] : null);
        growthNum += g.candidateNormSq - g.baseNormSq;
        growthDen += g.deltaNormSq;
      }
      modules.push({
        module: name,
        status,
        rank: fit.rank,
        relativeDelta: fit.baseNormSq > 0 ? Math.sqrt(fit.deltaNormSq / fit.baseNormSq) : 0,
        singularValues: Array.from(fit.spectrum),
        threshold: 1,
        thresholdMethod: 'bulk edge of the storage-rounding noise (whitened by per-row/column ulp scales); least rank over the function-preserving row/column scalings',
      });
    }
    const inv = attentionInvariants(b, c, layout, probes);
    layers.push({ layer: index, modules, probeRank: inv.probeRank, invariants: { qk: inv.qk, vo: inv.vo } });
    transformLayers.push({
      layer: index,
      mlpNeuronsPermuted: mlp.moved,
      mlpScaleMaxLog: maxAbsLog(fits.get('up_proj')!.rowScale),
      kvGroupOrder: Array.from(heads.groupOrder),
      queryHeadOrder: Array.from(heads.headOrder),
      qkScaleMaxLog: maxAbsLog(groupMeans(fits.get('k_proj')!.rowScale, layout.headDim)),
      voScaleMaxLog: maxAbsLog(groupMeans(fits.get('v_proj')!.rowScale, layout.headDim)),
    });
    options.onLayer?.(index + 1, layerCount);
  }

  const test = combineIndependence(independence);
  const kurtosisBase = moments[0].result().excessKurtosis;
  const kurtosisCandidate = moments[1].result().excessKurtosis;
  const normGrowth = growthDen > 0 ? growthNum / growthDen : 0;
  const transform = describeTransform(residual, normFold, transformLayers);
  const evidence = judge(test.log10PValue, normGrowth, layers);
  const analyseSeconds = (performance.now() - started) / 1000 - readSeconds - alignSeconds;
  return {
    schema: 'model-lineage/verify@1',
    base: summarize(base, adapters.base ?? null),
    candidate: summarize(candidate, adapters.candidate ?? null),
    relation: evidence.relation,
    reason: evidence.reason,
    pValue: test.pValue,
    log10PValue: test.log10PValue,
    independence: test,
    alignmentQuality: qualities.reduce((a, q) => a + q, 0) / qualities.length,
    direction: { normGrowth, kurtosisBase, kurtosisCandidate },
    lora: evidence.lora,
    fullFineTune: evidence.fullFineTune,
    transform,
    layers,
    timings: { readSeconds, alignSeconds, analyseSeconds, totalSeconds: (performance.now() - started) / 1000 },
  };
}

/** Weight moments of both models on the aligned, norm-folded matrices in the fitted gauge, so an
 * obfuscator's rescaling does not distort the candidate's kurtosis. */
function addMoments(moments: [MomentAccumulator, MomentAccumulator], x: NoisyMatrix, y: NoisyMatrix, fit: LowRankResult): void {
  moments[0].add(x.values);
  const scaled = new Float64Array(y.values.length);
  for (let i = 0; i < y.rows; i++) {
    for (let j = 0; j < y.cols; j++) scaled[i * y.cols + j] = fit.rowScale[i]! * y.values[i * y.cols + j]! * fit.colScale[j]!;
  }
  moments[1].add(scaled);
}

function formatP(log10P: number): string {
  return log10P > -300 ? `p = ${(10 ** log10P).toExponential(1)}` : `p = 10^${log10P.toFixed(0)}`;
}

/** Which RMSNorm each reader role was folded with. */
const READ_NORM: Readonly<Record<ModuleName, 'input' | 'post' | null>> = {
  q_proj: 'input', k_proj: 'input', v_proj: 'input', o_proj: null, gate_proj: 'post', up_proj: 'post', down_proj: null,
};

/** Squared norms of base, candidate and their difference with the norm folding undone. */
function unfoldedNorms(x: NoisyMatrix, y: NoisyMatrix, norms: [Float64Array, Float64Array] | null) {
  let d = 0, bx = 0, cy = 0;
  for (let i = 0; i < x.rows; i++) {
    for (let j = 0; j < x.cols; j++) {
      const p = i * x.cols + j;
      const xv = norms ? x.values[p]! / (norms[0][j]! || 1) : x.values[p]!;
      const yv = norms ? y.values[p]! / (norms[1][j]! || 1) : y.values[p]!;
      d += (yv - xv) * (yv - xv);
      bx += xv * xv;
      cy += yv * yv;
    }
  }
  return { deltaNormSq: d, baseNormSq: bx, candidateNormSq: cy };
}

function ratio(a: Float64Array, b: Float64Array): Float64Array {
  return Float64Array.from(a, (v, i) => (b[i] !== 0 ? v / b[i]! : 1));
}

/** Mean |scale| of each head block (a per-head obfuscation scale shows as one value per block). */
function groupMeans(scale: Float64Array, size: number): Float64Array {
  const out = new Float64Array(Math.floor(scale.length / size));
  for (let g = 0; g < out.length; g++) {
    let s = 0;
    for (let t = 0; t < size; t++) s += Math.abs(scale[g * size + t]!);
    out[g] = s / size;
  }
  return out;
}

/** Scales within this |log| of 1 are what fitting noise produces, not an obfuscation. */
const SCALE_REPORT_LOG = Math.log(1.05);

function describeTransform(residual: ResidualAlignment, normFold: number, layers: TransformFound['layers']): TransformFound {
  const summary: string[] = [];
  if (residual.moved > 0 || residual.flipped > 0) {
    summary.push(`residual stream permuted (${residual.moved} dimensions moved${residual.flipped ? `, ${residual.flipped} sign flips` : ''})`);
  }
  if (normFold > SCALE_REPORT_LOG) summary.push(`norm weights rescaled and folded (largest factor e^${normFold.toFixed(2)})`);
  const mlpMoved = layers.filter((l) => l.mlpNeuronsPermuted > 0).length;
  if (mlpMoved > 0) summary.push(`MLP neurons permuted in ${mlpMoved} of ${layers.length} layers`);
  const mlpScaled = layers.filter((l) => l.mlpScaleMaxLog > SCALE_REPORT_LOG).length;
  if (mlpScaled > 0) summary.push(`MLP up/down rescaled in ${mlpScaled} layers`);
  const headsMoved = layers.filter((l) => !isIdentity(l.queryHeadOrder)).length;
  if (headsMoved > 0) summary.push(`attention heads permuted in ${headsMoved} layers`);
  const qk = layers.filter((l) => l.qkScaleMaxLog > SCALE_REPORT_LOG).length;
  if (qk > 0) summary.push(`Q/K heads rescaled in ${qk} layers`);
  const vo = layers.filter((l) => l.voScaleMaxLog > SCALE_REPORT_LOG).length;
  if (vo > 0) summary.push(`V/O heads rescaled in ${vo} layers`);
  return {
    identity: summary.length === 0,
    residualPermuted: residual.moved,
    normFoldingMaxLogScale: normFold,
    layers,
    summary: summary.length ? summary : ['identity: no permutation or rescaling'],
  };
}

interface Judgement {
  relation: Relation;
  reason: string;
  lora: VerifyResult['lora'];
  fullFineTune: boolean;
}

function judge(log10P: number, growth: number, layers: readonly LayerEvidence[]): Judgement {
  const p = formatP(log10P);
  if (log10P > Math.log10(UNRELATED_P)) {
    return { relation: 'unrelated', reason: `no sign of a shared initialisation (${p} under independence)`, lora: null, fullFineTune: false };
  }
  if (log10P > Math.log10(RELATED_P)) {
    return { relation: 'inconclusive', reason: `weak evidence of a shared initialisation (${p}): neither independence nor kinship is clear`, lora: null, fullFineTune: false };
  }
  const all = layers.flatMap((l) => l.modules.map((m) => ({ layer: l.layer, ...m })));
  const changed = all.filter((m) => m.status !== 'unchanged');
  if (changed.length === 0) {
    return { relation: 'derived', reason: `same weights as BASE after alignment (a copy; ${p})`, lora: null, fullFineTune: false };
  }
  const fullFineTune = changed.some((m) => m.status === 'full');
  if (growth < -DERIVED_GROWTH) {
    return { relation: 'related', reason: `shared origin (${p}), but BASE looks derived from CANDIDATE (norm growth ${growth.toFixed(2)})`, lora: null, fullFineTune };
  }
  if (growth <= DERIVED_GROWTH) {
    return { relation: 'related', reason: `shared origin (${p}), but neither descends from the other: siblings or cousins (norm growth ${growth.toFixed(2)})`, lora: null, fullFineTune };
  }
  let lora: VerifyResult['lora'] = null;
  if (!fullFineTune) {
    // The noise threshold leaves no spurious ranks, so every changed module is a target, also
    // when the adapter covered only some layers.
    const targets = MODULES.map(([, name]) => name).filter((name) => changed.some((m) => m.module === name));
    const ranks = changed.filter((m) => targets.includes(m.module)).map((m) => m.rank);
    const loraLayers = [...new Set(changed.map((m) => m.layer))].sort((a, b) => a - b);
    lora = { rank: mode(ranks), targets, layers: loraLayers, stacked: false };
  }
  const what = lora ? `LoRA rank ${lora.rank} on ${lora.targets.join(', ')}` : 'a full fine-tune';
  return { relation: 'derived', reason: `CANDIDATE is BASE plus ${what} (${p}, norm growth ${growth.toFixed(2)})`, lora, fullFineTune };
}
