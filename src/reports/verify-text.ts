/** The terminal rendering of a verify result: the verdict, its evidence and one table row per layer. */
import Table from 'cli-table3';
import { printable } from '../io/errors.js';
import { describeComponents } from '../verify/direction.js';
import type { ModuleEvidence, VerifyResult } from '../verify/types.js';
import { formatPValue } from './html-page.js';

const SHORT: Readonly<Record<string, string>> = {
  q_proj: 'q', k_proj: 'k', v_proj: 'v', o_proj: 'o', gate_proj: 'gate', up_proj: 'up', down_proj: 'down',
};

/** "8 (36|0.77)": rank, then the last singular value above and the first below the threshold. */
/** " (query, value as the family names them)" when the family's own module names differ from the canonical ones. */
function nativeNames(lora: NonNullable<VerifyResult['lora']>): string {
  const native = lora.nativeTargets;
  return native ? ` (${native.join(', ')} as the family names them)` : '';
}

export function moduleCell(m: ModuleEvidence): string {
  if (m.status === 'unchanged' && m.singularValues.length === 0) return '0 =';
  const s = m.singularValues;
  const above = m.rank > 0 && m.rank <= s.length ? s[m.rank - 1]! : null;
  const below = m.rank < s.length ? s[m.rank]! : null;
  const gap = [above === null ? '' : above.toPrecision(3), below === null ? '' : below.toFixed(2)].join('|');
  const rank = m.status === 'full' ? `full ${m.rank}` : String(m.rank);
  return `${rank} (${gap})`;
}

function layerList(layers: readonly number[]): string {
  if (layers.length === 0) return 'none';
  const parts: string[] = [];
  let start = layers[0]!, prev = start;
  for (const l of [...layers.slice(1), NaN]) {
    if (l === prev + 1) {
      prev = l;
      continue;
    }
    parts.push(start === prev ? `${start}` : `${start}-${prev}`);
    start = prev = l;
  }
  return parts.join(',');
}

/** The sentence that says a wide model's layers were analysed on a residual sample (null when on all dimensions). */
export function residualSampleNote(r: VerifyResult): string | null {
  const sampled = [...new Set(r.layers.map((l) => l.residualSample).filter((k): k is number => k !== null))];
  return sampled.length > 0 ? `wide model: layers analysed on a seeded sample of ${sampled.join('/')} residual dimensions (a rerun with another --seed samples others)` : null;
}

/** The terminal summary of a verify result. */
export function renderVerifyText(r: VerifyResult): string {
  const lines: string[] = [];
  const adapter = r.candidate.adapter ? ' (PEFT adapter merged onto BASE)' : '';
  lines.push(`${r.base.name} -> ${r.candidate.name}${adapter}: ${r.relation.toUpperCase()}`);
  lines.push(`  ${r.reason}`);
  lines.push(`  independence test: p = ${formatPValue(r.log10PValue)} (${r.independence.method}; z per layer ${r.independence.perLayer.map((l) => l.z.toFixed(1)).join(' ')}; ${r.independence.rowsUsed} of ${r.independence.rows} neurons informative)`);
  const storage = [['BASE', r.quantization?.base], ['CANDIDATE', r.quantization?.candidate]] as const;
  const gguf = storage.filter(([, q]) => q).map(([side, q]) => `${side} ${q!.fileType ?? 'GGUF'} (${Object.entries(q!.tensorTypes).map(([t, n]) => `${n} ${t}`).join(', ')})`);
  if (gguf.length > 0) lines.push(`  GGUF storage: ${gguf.join('; ')}`);
  if (r.leftOut) lines.push(`  ${r.leftOut.note}`);
  if (r.relation !== 'unrelated') {
    lines.push(`  LoRA: ${r.lora ? `rank ${r.lora.rankIsLowerBound ? '>= ' : ''}${r.lora.rank}${r.lora.rankIsLowerBound ? ' (weaker directions may lie below the quantization floor)' : ''} on ${r.lora.targets.join(', ')}${nativeNames(r.lora)} (layers ${layerList(r.lora.layers)})` : 'none'}; full fine-tune: ${r.fullFineTune ? 'yes' : 'no'}`);
    lines.push(`  direction: norm growth ${r.direction.normGrowth.toFixed(3)} (~1 derived, ~0 siblings, ~-1 reversed); weight kurtosis ${r.direction.kurtosisBase.toFixed(3)} -> ${r.direction.kurtosisCandidate.toFixed(3)}`);
    if (r.direction.components) lines.push(`  direction by component: ${describeComponents(r.direction.components)} (BASE's own, lacking in CANDIDATE, when below the dense rest at z < -3.09)`);
    lines.push(`  transform found: ${r.transform.summary.join('; ')}`);
    lines.push(`  alignment quality: ${r.alignmentQuality.toFixed(3)} (mean matched correlation)`);
  } else {
    lines.push(`  (alignment of unrelated models is arbitrary: no transform or rank is reported as evidence)`);
  }
  const modules = r.layers[0]?.modules.map((m) => m.module) ?? [];
  const table = new Table({
    head: ['layer', ...modules.map((m) => SHORT[m] ?? m), 'probe', 'qk/vo'],
    style: { head: [], border: [] },
  });
  for (const layer of r.layers) {
    table.push([
      String(layer.layer),
      ...layer.modules.map(moduleCell),
      layer.probeRank === null ? '-' : String(layer.probeRank),
      `${layer.invariants.qk.toFixed(2)}/${layer.invariants.vo.toFixed(2)}`,
    ]);
  }
  lines.push('  per layer: numerical rank of the aligned delta (last singular value above | first below the noise threshold, in threshold units; "=" identical);');
  lines.push('  probe: rank of the one-token attention-output change (Origin-Tracer); qk/vo: cosine of the alignment-free invariants');
  const sample = residualSampleNote(r);
  if (sample) lines.push(`  ${sample}`);
  // Model and module names come from files: escaped, they cannot break or forge a line.
  const summary = lines.map(printable);
  summary.push(table.toString());
  summary.push(`  time: ${r.timings.totalSeconds.toFixed(1)} s (read ${r.timings.readSeconds.toFixed(1)} s, align ${r.timings.alignSeconds.toFixed(1)} s)`);
  return summary.join('\n') + '\n';
}
