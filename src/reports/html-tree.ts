/**
 * `lineage tree --html`: the family tree drawn by Graphviz (the same DOT as `--format dot`,
 * laid out at report time by the embedded wasm build and inlined as SVG), roots on top, each
 * tree in its own box; clicking a model shows its details from an inlined JSON blob.
 */
import { instance, type Viz } from '@viz-js/viz';
import { edgeLabel, renderDot } from './tree-render.js';
import type { LineageEdge, LineageResult } from '../tree/types.js';
import { escapeHtml, formatNumber, htmlPage } from './html-page.js';

/** What the page shows when a model is clicked: its name and (label, value) rows, formatted here. */
export interface NodeDetails {
  readonly name: string;
  readonly rows: ReadonlyArray<readonly [string, string]>;
}

/** What an edge's direction margin measures, by method (see LineageEdge.directionMargin). */
export function directionEvidence(method: LineageResult['method']): string {
  return method === 'mother' ? 'kurtosis evidence' : 'norm-growth evidence';
}

export function nodeDetails(result: LineageResult): Record<string, NodeDetails> {
  const evidence = directionEvidence(result.method);
  const parentEdges = new Map<string, LineageEdge[]>();
  for (const e of result.edges) parentEdges.set(e.child, [...(parentEdges.get(e.child) ?? []), e]);
  const virtual = new Set((result.virtualNodes ?? []).map((v) => v.name));
  const children = new Map<string, string[]>();
  for (const e of result.edges) children.set(e.parent, [...(children.get(e.parent) ?? []), e.child]);
  const details: Record<string, NodeDetails> = {};
  result.trees.forEach((tree, t) => {
    for (const name of tree.members) {
      const incoming = parentEdges.get(name) ?? [];
      const edge = incoming.length === 1 ? incoming[0] : undefined;
      const rows: Array<readonly [string, string]> = [['family', `${t + 1} (root ${tree.root})`]];
      const merge = result.merges?.find((m) => m.child === name);
      if (virtual.has(name)) rows.push(['virtual', 'not among the inputs: the common parent of its children']);
      if (merge) {
        rows.push(['parents', merge.parents.map((p, i) => `${p} (weight ${formatNumber(merge.weights[i]!)})`).join(', ')]);
        rows.push(['kind', `merge (${merge.method}${merge.base ? ` over ${merge.base}` : ''})`]);
        rows.push(['residual', `${formatNumber(merge.residual)} of the nearest single member's`]);
      } else if (edge) {
        rows.push(['parent', edge.parent], ['change', edgeLabel(edge)]);
        rows.push(['kind', edge.kind === 'lora' ? 'LoRA (low-rank delta)' : 'full fine-tune (dense delta)']);
        if (edge.rank !== null) rows.push(['LoRA rank', String(edge.rank)]);
        if (edge.modules.length) rows.push(['modules', edge.modules.join(', ')]);
        rows.push(['distance', formatNumber(edge.distance)]);
        if (edge.adapter) rows.push(['direction', 'none read: a PEFT adapter is applied to its base']);
        else rows.push(['direction margin', `${formatNumber(edge.directionMargin)} (${edge.directionMargin >= 0 ? 'agrees with' : 'against'} the ${evidence})`]);
      } else {
        rows.push(['parent', 'none: a root']);
      }
      const kids = [...(children.get(name) ?? [])].sort();
      rows.push(['children', kids.length ? kids.join(', ') : 'none']);
      details[name] = { name, rows };
    }
  });
  return details;
}

let vizInstance: Promise<Viz> | null = null;

/** The DOT of the result laid out to SVG markup (no XML prolog), ready to inline. */
export async function renderTreeSvg(result: LineageResult): Promise<string> {
  const viz = await (vizInstance ??= instance());
  const svg = viz.renderString(renderDot(result), {
    format: 'svg',
    graphAttributes: { bgcolor: 'transparent', nodesep: 0.5, ranksep: 0.7, fontname: 'Helvetica', fontsize: 12 },
    edgeAttributes: { fontname: 'Helvetica', fontsize: 10 },
  });
  return svg.slice(svg.indexOf('<svg'));
}

const TREE_STYLES = `
.layout { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
#graph { flex: 1 1 560px; overflow: auto; border: 1px solid var(--line); border-radius: 8px; padding: 12px; }
#graph svg { max-width: 100%; height: auto; }
#graph g.node { cursor: pointer; }
#graph g.node polygon { fill: #fff; stroke: #57606a; }
#graph g.node:hover polygon { fill: #ddf4ff; }
#graph g.node.selected polygon { fill: #0969da; stroke: #0969da; }
#graph g.node.selected text { fill: #fff; }
#graph g.cluster polygon { fill: #f6f8fa; stroke: #afb8c1; }
#graph g.edge text { fill: #424a53; }
#details { flex: 0 0 300px; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; background: var(--panel); min-height: 120px; }
#details h3 { margin-top: 0; }
.legend { color: var(--muted); margin: 8px 0 0; }
`;

/** Runs in the browser: clicking a drawn model fills #details from the inlined JSON. */
const TREE_SCRIPT = `
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var panel = document.getElementById('details');
  function text(tag, content, cls) { var el = document.createElement(tag); el.textContent = content; if (cls) el.className = cls; return el; }
  function show(name) {
    var d = data.nodes[name];
    var table = document.createElement('table');
    d.rows.forEach(function (r) {
      var tr = document.createElement('tr');
      tr.appendChild(text('th', r[0]));
      tr.appendChild(text('td', r[1]));
      table.appendChild(tr);
    });
    panel.replaceChildren(text('h3', d.name), table);
  }
  document.querySelectorAll('#graph g.node').forEach(function (g) {
    var name = g.querySelector('title').textContent;
    g.setAttribute('data-model', name);
    g.addEventListener('click', function () {
      document.querySelectorAll('#graph g.node.selected').forEach(function (s) { s.classList.remove('selected'); });
      g.classList.add('selected');
      show(name);
    });
  });
})();
`;

/** The method's warnings (e.g. models it could not place with confidence), when it gives any. */
function notesList(result: LineageResult): string {
  // `notes` is an optional field of newer results; older ones simply lack it.
  const notes = (result as { readonly notes?: readonly string[] }).notes ?? [];
  if (notes.length === 0) return '';
  return `<h2>Notes</h2><ul id="notes">${notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>`;
}

/** Inputs the tree left out (not a model, unreadable, an adapter without its base), with why. */
function skippedList(result: LineageResult): string {
  const skipped = result.skipped ?? [];
  if (skipped.length === 0) return '';
  return `<h2>Skipped inputs</h2><ul id="skipped">${skipped.map((s) => `<li><code>${escapeHtml(s.path)}</code>: ${escapeHtml(s.reason)}</li>`).join('')}</ul>`;
}

function edgeTable(result: LineageResult): string {
  if (result.edges.length === 0) return '<p class="muted">No edges: every model is its own root.</p>';
  const rows = result.edges.map((e) => `<tr><td>${escapeHtml(e.parent)}</td><td>${escapeHtml(e.child)}</td><td>${escapeHtml(edgeLabel(e, result.merges))}</td>`
    + `<td class="num">${formatNumber(e.distance)}</td><td class="num">${e.adapter ? 'none read' : formatNumber(e.directionMargin)}</td></tr>`).join('\n');
  return `<table id="edges"><thead><tr><th>parent</th><th>child</th><th>change</th><th>distance</th><th>direction margin</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

/** The self-contained HTML report of one tree result. */
export async function renderTreeHtml(result: LineageResult): Promise<string> {
  const models = result.trees.reduce((n, t) => n + t.members.length, 0);
  const body = `<header class="page">
<div class="sub">model-lineage tree report (method: ${escapeHtml(result.method)})</div>
<h1 id="summary">${models} model${models === 1 ? '' : 's'} in ${result.trees.length} famil${result.trees.length === 1 ? 'y' : 'ies'}</h1>
</header>
<main>
<div class="layout">
<div id="graph">${await renderTreeSvg(result)}</div>
<aside id="details"><p class="muted">Click a model for its details.</p></aside>
</div>
<p class="legend">Roots on top; each box is one family. Dashed edge: LoRA (low-rank delta, with its rank and modules); solid: full fine-tune
or a quantized copy; bold: one of a merge's parents, with its weight; a dashed model: a common parent not among the inputs.
<code>d</code> is the pair's distance; <code>margin</code> is the ${directionEvidence(result.method)} for the edge's direction (positive: agrees).</p>
${notesList(result)}
${skippedList(result)}
<h2>Edges</h2>
${edgeTable(result)}
</main>`;
  return htmlPage({
    title: `lineage tree: ${models} models`,
    styles: TREE_STYLES,
    body,
    data: { nodes: nodeDetails(result) },
    script: TREE_SCRIPT,
  });
}
