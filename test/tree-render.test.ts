import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeResult } from '../src/cli/run.js';
import { edgeLabel, renderDot, renderMermaid, renderTerminal } from '../src/reports/tree-render.js';
import type { LineageResult } from '../src/tree/types.js';

const RESULT: LineageResult = {
  method: 'lineage',
  trees: [
    { root: 'p0', members: ['p0', 'p1', 'p1a', 'p2'] },
    { root: 'q "0"', members: ['q "0"'] },
  ],
  edges: [
    { parent: 'p0', child: 'p1', kind: 'full', rank: null, modules: [], distance: 0.0123, directionMargin: 0.41 },
    { parent: 'p1', child: 'p1a', kind: 'lora', rank: 0, modules: [], distance: 0, directionMargin: 0 },
    { parent: 'p0', child: 'p2', kind: 'lora', rank: 8, modules: ['q_proj', 'v_proj'], distance: 2.5e-5, directionMargin: -0.02 },
  ],
};

test('edge labels', () => {
  assert.equal(edgeLabel(RESULT.edges[0]!), 'full FT');
  assert.equal(edgeLabel(RESULT.edges[1]!), 'identical weights');
  assert.equal(edgeLabel(RESULT.edges[2]!), 'LoRA r=8 q_proj,v_proj');
});

test('the label of a quantized copy names its type when the edge carries it', () => {
  const edge = { parent: 'p0', child: 'p0.Q8_0', kind: 'quantized', rank: 0, modules: [], distance: 0.003, directionMargin: 0.2 } as const;
  assert.equal(edgeLabel({ ...edge, quantization: 'Q4_K+Q6_K' }), 'quantized copy (Q4_K+Q6_K)');
  assert.equal(edgeLabel(edge), 'quantized copy');
  const result: LineageResult = { method: 'lineage', trees: [{ root: 'p0', members: ['p0', 'p0.Q8_0'] }], edges: [{ ...edge, quantization: 'Q8_0' }] };
  assert.match(renderTerminal(result), /└── p0\.Q8_0 {2}quantized copy \(Q8_0\) {2}d=/);
  assert.match(renderDot(result), /"p0" -> "p0\.Q8_0" \[label="quantized copy \(Q8_0\)\\nd=/);
});

test('terminal tree', () => {
  assert.equal(
    renderTerminal(RESULT),
    [
      'p0',
      '├── p1  full FT  d=0.0123  margin=+0.410',
      '│   └── p1a  identical weights  d=0  margin=0',
      '└── p2  LoRA r=8 q_proj,v_proj  d=2.50e-5  margin=-0.0200',
      '',
      'q "0"',
      '',
    ].join('\n'),
  );
});

test('Graphviz DOT', () => {
  assert.equal(
    renderDot(RESULT),
    [
      'digraph lineage {',
      '  rankdir=TB;',
      '  node [shape=box, fontname="Helvetica"];',
      '  subgraph cluster_0 {',
      '    label="tree 1";',
      '    "p0";',
      '    "p1";',
      '    "p1a";',
      '    "p2";',
      '  }',
      '  subgraph cluster_1 {',
      '    label="tree 2";',
      '    "q \\"0\\"";',
      '  }',
      '  "p0" -> "p1" [label="full FT\\nd=0.0123 margin=+0.410", style=solid];',
      '  "p1" -> "p1a" [label="identical weights\\nd=0 margin=0", style=dashed];',
      '  "p0" -> "p2" [label="LoRA r=8 q_proj,v_proj\\nd=2.50e-5 margin=-0.0200", style=dashed];',
      '}',
      '',
    ].join('\n'),
  );
});

test('Mermaid text', () => {
  assert.equal(
    renderMermaid(RESULT),
    [
      'graph TD',
      '  m0["p0"]',
      '  m1["p1"]',
      '  m2["p1a"]',
      '  m3["p2"]',
      '  m4["q #quot;0#quot;"]',
      '  m0 -->|"full FT d=0.0123"| m1',
      '  m1 -.->|"identical weights d=0"| m2',
      '  m0 -.->|"LoRA r=8 q_proj,v_proj d=2.50e-5"| m3',
      '',
    ].join('\n'),
  );
});

test('JSON contract round-trips through the commands\' writeResult', () => {
  let out = '';
  writeResult(RESULT, true, renderTerminal, { stdout: { write: (text: string) => (out += text) }, stderr: { write: () => true } });
  const parsed = JSON.parse(out);
  assert.deepEqual(parsed, RESULT);
  assert.deepEqual(Object.keys(parsed.edges[0]).sort(), ['child', 'directionMargin', 'distance', 'kind', 'modules', 'parent', 'rank']);
});
