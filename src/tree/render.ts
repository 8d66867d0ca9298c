/** Renderings of a LineageResult: terminal tree, Graphviz DOT, Mermaid text and JSON. */
import { printable } from '../io/errors.js';
import type { LineageEdge, LineageResult } from './types.js';

/**
 * "LoRA r=8 q_proj,v_proj", "full FT", or "identical weights" for a zero delta; edges found by
 * alignment say so ("obfuscated copy", "LoRA r=8 q_proj,v_proj (aligned)"), and adapters too
 * ("PEFT adapter LoRA r=8 q_proj,v_proj").
 */
export function edgeLabel(edge: LineageEdge): string {
  if (edge.aligned?.copy) return 'obfuscated copy';
  if (edge.adapter) return `PEFT adapter LoRA r=${edge.rank}${edge.modules.length ? ` ${edge.modules.join(',')}` : ''}`;
  const aligned = edge.aligned ? ' (aligned)' : '';
  if (edge.kind === 'full') return `full FT${aligned}`;
  if (edge.kind === 'quantized') return 'quantized copy';
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

/** One block per tree, roots first; children indented with box-drawing characters. */
export function renderTerminal(result: LineageResult): string {
  const { children, edgeTo } = indexEdges(result);
  const lines: string[] = [];
  for (const tree of result.trees) {
    if (lines.length) lines.push('');
    lines.push(tree.root);
    const walk = (node: string, prefix: string): void => {
      const kids = children.get(node) ?? [];
      kids.forEach((child, i) => {
        const last = i === kids.length - 1;
        const edge = edgeTo.get(child)!;
        lines.push(
          `${prefix}${last ? '└── ' : '├── '}${child}  ${edgeLabel(edge)}  d=${formatNumber(edge.distance)}${marginText(edge, '  ')}`,
        );
        walk(child, prefix + (last ? '    ' : '│   '));
      });
    };
    walk(tree.root, '');
  }
  // Model names are folder names: escaped, they cannot break or forge a line.
  return lines.map(printable).join('\n') + '\n';
}

export function renderDot(result: LineageResult): string {
  const quote = (s: string) => `"${printable(s.replace(/\\/g, '\\\\').replace(/"/g, '\\"'))}"`;
  const lines = ['digraph lineage {', '  rankdir=TB;', '  node [shape=box, fontname="Helvetica"];'];
  result.trees.forEach((tree, t) => {
    lines.push(`  subgraph cluster_${t} {`, `    label=${quote(`tree ${t + 1}`)};`);
    for (const member of tree.members) lines.push(`    ${quote(member)};`);
    lines.push('  }');
  });
  for (const edge of result.edges) {
    const label = `${edgeLabel(edge)}\nd=${formatNumber(edge.distance)}${marginText(edge, ' ')}`;
    const style = edge.kind === 'lora' ? 'dashed' : 'solid';
    lines.push(`  ${quote(edge.parent)} -> ${quote(edge.child)} [label=${quote(label)}, style=${style}];`);
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** Mermaid flowchart text; node ids are positional (m0, m1, ...) since names may hold any character. */
export function renderMermaid(result: LineageResult): string {
  const text = (s: string) => `"${printable(s.replace(/"/g, '#quot;'))}"`;
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
    const arrow = edge.kind === 'lora' ? '-.->' : '-->';
    lines.push(`  ${ids.get(edge.parent)} ${arrow}|${text(`${edgeLabel(edge)} d=${formatNumber(edge.distance)}`)}| ${ids.get(edge.child)}`);
  }
  return lines.join('\n') + '\n';
}

/** The JSON contract, pretty-printed (with the truth score when one was computed). */
export function renderJson(result: LineageResult & { readonly score?: unknown }): string {
  return JSON.stringify(result, null, 2) + '\n';
}

function indexEdges(result: LineageResult) {
  const children = new Map<string, string[]>();
  const edgeTo = new Map<string, LineageEdge>();
  for (const edge of result.edges) {
    const list = children.get(edge.parent);
    if (list) list.push(edge.child);
    else children.set(edge.parent, [edge.child]);
    edgeTo.set(edge.child, edge);
  }
  return { children, edgeTo };
}
