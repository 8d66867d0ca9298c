/** Realistic result objects for the report tests, shaped like runs on the shipped samples. */
import type { LineageEdge, LineageResult } from '../src/tree/types.js';
import { MODULE_NAMES } from '../src/arch/types.js';
import type { LayerEvidence, ModuleEvidence, ModuleName, VerifyResult } from '../src/verify/types.js';

export const MODULES: readonly ModuleName[] = MODULE_NAMES;
export const LAYERS = 4;
export const LORA_RANK = 8;
const SPECTRUM_LENGTH = 24;

/** Noise-only spectrum: a Marchenko-Pastur-like decay that stays under the threshold (1). */
function noiseSpectrum(seed: number): number[] {
  return Array.from({ length: SPECTRUM_LENGTH }, (_, i) => 0.95 - 0.6 * (i / SPECTRUM_LENGTH) - 0.01 * ((seed * 7 + i) % 3));
}

/** `rank` values far above the threshold, then the noise bulk: the gap a reader should see. */
function lowRankSpectrum(rank: number, seed: number): number[] {
  const signal = Array.from({ length: rank }, (_, i) => 60 * 0.72 ** i + seed);
  return [...signal, ...noiseSpectrum(seed).slice(0, SPECTRUM_LENGTH - rank)];
}

function moduleEvidence(layer: number, module: ModuleName): ModuleEvidence {
  const adapted = module === 'q_proj' || module === 'v_proj';
  return {
    module,
    status: adapted ? 'low-rank' : 'unchanged',
    rank: adapted ? LORA_RANK : 0,
    relativeDelta: adapted ? 0.031 + 0.002 * layer : 0,
    singularValues: adapted ? lowRankSpectrum(LORA_RANK, layer) : noiseSpectrum(layer),
    threshold: 1,
    thresholdMethod: 'bulk edge of the storage-rounding noise (bf16)',
  };
}

/** p2 against p0 after obfuscation (like sample o1): LoRA rank 8 on q_proj and v_proj in all 4 layers. */
export function sampleVerifyResult(overrides: Partial<VerifyResult> = {}): VerifyResult {
  const layers: LayerEvidence[] = Array.from({ length: LAYERS }, (_, layer) => ({
    layer,
    modules: MODULES.map((m) => moduleEvidence(layer, m)),
    probeRank: LORA_RANK,
    invariants: { qk: 0.9991 - layer * 1e-4, vo: 0.9987 - layer * 1e-4 },
    prunedNeurons: { base: 0, candidate: 0 },
    residualSample: null,
  }));
  return {
    schema: 'model-lineage/verify@1',
    base: { name: 'p0', path: 'samples/p0', dtypes: ['BF16'], parameters: 803968, adapter: null },
    candidate: { name: 'o1', path: 'samples/o1', dtypes: ['BF16'], parameters: 803968, adapter: null },
    relation: 'derived',
    adapterBase: null,
    reason: 'After undoing permutations and scalings, the delta is rank 8 on q_proj and v_proj in every layer, far above storage noise.',
    pValue: 0,
    log10PValue: -412.37,
    independence: {
      method: 'matched-neuron Spearman test (gate vs up matchings)',
      perLayer: Array.from({ length: LAYERS }, (_, layer) => ({ layer, spearman: 0.998 - 0.001 * layer, z: 23.1 - 0.2 * layer, rowsUsed: 534, rows: 534 })),
      statistic: 1899.2,
      pValue: 0,
      log10PValue: -412.37,
      rowsUsed: 534 * LAYERS,
      rows: 534 * LAYERS,
      layersTested: LAYERS,
    },
    alignmentQuality: 0.9996,
    direction: { normGrowth: 0.97, kurtosisBase: 3.42, kurtosisCandidate: 3.38 },
    lora: { rank: LORA_RANK, targets: ['q_proj', 'v_proj'], layers: [0, 1, 2, 3], stacked: false },
    fullFineTune: false,
    transform: {
      identity: false,
      residualPermuted: 128,
      normFoldingMaxLogScale: 0.69,
      layers: Array.from({ length: LAYERS }, (_, layer) => ({
        layer,
        mlpNeuronsPermuted: 352,
        mlpScaleMaxLog: 0.41,
        kvGroupOrder: [1, 0],
        queryHeadOrder: [2, 3, 0, 1],
        qkScaleMaxLog: 0.22 + 0.01 * layer,
        voScaleMaxLog: 0.35,
      })),
      summary: [
        'residual stream permuted (128 of 128 dimensions), norm scales folded (up to x2.0)',
        'MLP neurons permuted (352 of 352 in each layer) and rescaled through up/down',
        'attention heads reordered (key/value groups swapped) and rescaled through Q/K and V/O',
      ],
    },
    layers,
    timings: { readSeconds: 0.04, alignSeconds: 0.31, analyseSeconds: 0.12, totalSeconds: 0.49 },
    ...overrides,
  };
}

function edge(parent: string, child: string, kind: LineageEdge['kind'], rank: number | null, modules: string[], distance: number, directionMargin: number): LineageEdge {
  return { parent, child, kind, rank, modules, distance, directionMargin };
}

/**
 * The samples' two families: p0 with its descendants, and q0 with q2 (11 models). Margins are
 * norm growth (near +1 for a fine-tune); p4a's is made slightly negative, an edge chosen against
 * the evidence, so the reports' wording for that case is exercised too.
 */
export function sampleLineageResult(): LineageResult {
  return {
    method: 'lineage',
    trees: [
      { root: 'p0', members: ['p0', 'p1', 'p2', 'o1', 'p2a', 'p3', 'o3', 'p4', 'p4a'] },
      { root: 'q0', members: ['q0', 'q2'] },
    ],
    edges: [
      edge('p0', 'p1', 'full', null, [], 0.412, 0.93),
      edge('p0', 'p2', 'lora', 8, ['q_proj', 'v_proj'], 0.0312, 0.98),
      edge('p2', 'o1', 'lora', 0, [], 0, 0),
      edge('p2', 'p2a', 'lora', 16, ['q_proj', 'v_proj'], 0.0428, 0.97),
      edge('p0', 'p3', 'lora', 4, [...MODULES], 0.0561, 0.99),
      edge('p3', 'o3', 'lora', 0, [], 0, 0),
      edge('p0', 'p4', 'full', null, [], 0.398, 0.91),
      edge('p4', 'p4a', 'lora', 8, ['v_proj', 'o_proj'], 0.0297, -0.004),
      edge('q0', 'q2', 'lora', 8, ['q_proj', 'v_proj'], 0.0305, 0.98),
    ],
  };
}

export function modelCount(result: LineageResult): number {
  return result.trees.reduce((n, t) => n + t.members.length, 0);
}
