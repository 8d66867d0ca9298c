/** Renderings of a LineageResult: terminal tree, Graphviz DOT and Mermaid text, and its score against a truth file. */
import { printable } from '../io/errors.js';
import type { TruthScore, Unscored } from '../tree/truth.js';
import type { LineageEdge, LineageResult } from '../tree/types.js';

/**
 * "LoRA r=8 q_proj,v_proj", "full FT", "quantized copy (Q8_0)", or "identical weights" for a zero delta; edges found by
 * alignment say so ("obfuscated copy", "LoRA r=8 q_proj,v_proj (aligned)"), and adapters too
 * ("PEFT adapter LoRA r=8 q_proj,v_proj"); a merge's edges "merge ties w=0.9" (the method when the
 * result's merges are given).
 */
export function edgeLabel(edge: LineageEdge, merges?: LineageResult['merges']): string {
  if (edge.kind === 'merge') {
    const method = merges?.find((m) => m.child === edge.child)?.method;
    return `merge${method ? ` ${method}` : ''}${edge.weight !== undefined ? ` w=${formatNumber(edge.weight)}` : ''}`;
  }
  if (edge.aligned?.copy) return 'obfuscated copy';
  if (edge.adapter) return `PEFT adapter LoRA r=${edge.rank}${edge.modules.length ? ` ${edge.modules.join(',')}` : ''}`;
  const aligned = edge.aligned ? ' (aligned)' : '';
  if (edge.kind === 'full') return `full FT${aligned}`;
  if (edge.kind === 'quantized') return `quantized copy${edge.quantization ? ` (${edge.quantization})` : ''}`;
  if (edge.rank === 0) return `identical weights${aligned}`;
  const modules = edge.modules.length ? ` ${edge.modules.join(',')}` : '';
  return `LoRA r=${edge.rank ?? '?'}${modules}${aligned}`;
}

function formatNumber(x: number): string {
  if (Number.isNaN(x)) return '?';
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  return Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? x.toPrecision(3) : x.toExponential(2);
}

function signed(x: number): string {
  return x > 0 ? `+${formatNumber(x)}` : formatNumber(x);
}

/** "  margin=+0.85"; nothing for an adapter, whose direction is given rather than read. */
function marginText(edge: LineageEdge, separator: string): string {
  return edge.adapter ? '' : `${separator}margin=${signed(edge.directionMargin)}`;
}

/**
 * One block per tree, each root in turn; children indented with box-drawing characters. A merge
 * appears under each of its parents; its own children only under the first. Virtual nodes are
 * marked "(virtual: not among the inputs)".
 */
export function renderTerminal(result: LineageResult): string {
  const children = childrenOf(result);
  const virtual = virtualNames(result);
  const tag = (node: string) => (virtual.has(node) ? `${node}  (virtual: not among the inputs)` : node);
  const shown = new Set<string>();
  const lines: string[] = [];
  for (const tree of result.trees) {
    if (lines.length) lines.push('');
    const walk = (node: string, prefix: string): void => {
      shown.add(node);
      const kids = children.get(node) ?? [];
      kids.forEach((edge, i) => {
        const last = i === kids.length - 1;
        const again = shown.has(edge.child) ? '  (merge: shown above)' : '';
        lines.push(
          `${prefix}${last ? '└── ' : '├── '}${tag(edge.child)}  ${edgeLabel(edge, result.merges)}  d=${formatNumber(edge.distance)}`
          + `${marginText(edge, '  ')}${again}`,
        );
        if (!again) walk(edge.child, prefix + (last ? '    ' : '│   '));
      });
    };
    for (const root of tree.roots ?? [tree.root]) {
      lines.push(tag(root));
      walk(root, '');
    }
  }
  // Model names are folder names: escaped, they cannot break or forge a line.
  return lines.map(printable).join('\n') + '\n';
}

/** Merge edges are bold; virtual nodes are dashed boxes. */
export function renderDot(result: LineageResult): string {
  const quote = (s: string) => `"${printable(s.replace(/\\/g, '\\\\').replace(/"/g, '\\"'))}"`;
  const virtual = virtualNames(result);
  const lines = ['digraph lineage {', '  rankdir=TB;', '  node [shape=box, fontname="Helvetica"];'];
  result.trees.forEach((tree, t) => {
    lines.push(`  subgraph cluster_${t} {`, `    label=${quote(`tree ${t + 1}`)};`);
    for (const member of tree.members) lines.push(`    ${quote(member)}${virtual.has(member) ? ' [style=dashed]' : ''};`);
    lines.push('  }');
  });
  for (const edge of result.edges) {
    const label = `${edgeLabel(edge, result.merges)}\nd=${formatNumber(edge.distance)}${marginText(edge, ' ')}`;
    const style = edge.kind === 'lora' ? 'dashed' : edge.kind === 'merge' ? 'bold' : 'solid';
    lines.push(`  ${quote(edge.parent)} -> ${quote(edge.child)} [label=${quote(label)}, style=${style}];`);
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

/**
 * Mermaid flowchart text; node ids are positional (m0, m1, ...) since names may hold any
 * character. Merge edges are thick (==>), virtual nodes dashed (class "virtual").
 */
export function renderMermaid(result: LineageResult): string {
  const text = (s: string) => `"${printable(s.replace(/"/g, '#quot;'))}"`;
  const virtual = virtualNames(result);
  const ids = new Map<string, string>();
  const lines = ['graph TD'];
  for (const tree of result.trees) {
    for (const member of tree.members) {
      const id = `m${ids.size}`;
      ids.set(member, id);
      lines.push(`  ${id}[${text(member)}]`);
    }
  }
  for (const edge of result.edges) {
    const arrow = edge.kind === 'lora' ? '-.->' : edge.kind === 'merge' ? '==>' : '-->';
    lines.push(`  ${ids.get(edge.parent)} ${arrow}|${text(`${edgeLabel(edge, result.merges)} d=${formatNumber(edge.distance)}`)}| ${ids.get(edge.child)}`);
  }
  if (virtual.size) {
    lines.push('  classDef virtual stroke-dasharray: 5 5;');
    for (const name of virtual) lines.push(`  class ${ids.get(name)} virtual;`);
  }
  return lines.join('\n') + '\n';
}

/** Accuracy against the truth file, and what the score left out. */
export function renderTruthScore(score: TruthScore, unscored: Unscored): string {
  const lines = [
    `edge accuracy: ${score.correctEdges}/${score.trueEdges} = ${(100 * score.edgeAccuracy).toFixed(1)}%`,
    `clustering accuracy (Rand index): ${(100 * score.clusteringAccuracy).toFixed(1)}%  (adjusted ${score.adjustedRandIndex.toFixed(3)})`,
  ];
  for (const e of score.wrongEdges) lines.push(`  wrong: ${e.parent} -> ${e.child} (${e.problem}; true parent ${e.trueParent ?? 'none'})`);
  for (const e of score.missedEdges) lines.push(`  missed: ${e.parent} -> ${e.child}`);
  if (unscored.obfuscated.length) lines.push(`  not scored (obfuscated; use --include-obfuscated): ${unscored.obfuscated.join(', ')}`);
  if (unscored.adapters.length) lines.push(`  not scored (adapters the truth does not list): ${unscored.adapters.join(', ')}`);
  return lines.map(printable).join('\n') + '\n'; // names from the truth file and folders
}

/** Each node's outgoing edges in the result's order (a merge has one incoming edge per parent). */
function childrenOf(result: LineageResult): Map<string, LineageEdge[]> {
  const children = new Map<string, LineageEdge[]>();
  for (const edge of result.edges) children.set(edge.parent, [...(children.get(edge.parent) ?? []), edge]);
  return children;
}

function virtualNames(result: LineageResult): Set<string> {
  return new Set((result.virtualNodes ?? []).map((v) => v.name));
}
