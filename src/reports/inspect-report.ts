/**
 * `lineage inspect`: what a model or adapter folder holds, from headers and config alone
 * (no tensor data is read). One report object serves both the JSON and the table output.
 */
import * as path from 'node:path';
import Table from 'cli-table3';
import { printable } from '../io/errors.js';
import { describeGguf, type GgufDescription } from '../arch/gguf.js';
import { mapModel } from '../arch/map.js';
import { describeAdapter, isAdapter, mapAdapter, type AdapterSummary } from '../arch/peft.js';
import { GLOBAL_ROLES, type Family, type LayerRole, type ModelMap, type TensorSource } from '../arch/types.js';

export interface DTypeCount {
  readonly tensors: number;
  readonly parameters: number;
}

/** Layers sharing one set of roles, e.g. { layers: '0-31', roles: ['q', 'k', ...] }. */
export interface RoleGroup {
  readonly layers: string;
  readonly roles: LayerRole[];
}

export interface ModelSection {
  readonly family: Family;
  readonly architecture: string | null;
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number | null;
  readonly kvHeads: number | null;
  readonly headDim: number | null;
  readonly intermediate: number | null;
  readonly vocab: number | null;
  readonly tiedEmbeddings: boolean;
  readonly layerPrefix: string | null;
  readonly globalRoles: string[];
  readonly roles: RoleGroup[];
  readonly unmapped: string[];
}

export interface InspectReport {
  readonly kind: 'model' | 'adapter';
  readonly name: string;
  readonly path: string;
  /** Weight file names (shards), in index order. */
  readonly files: string[];
  readonly shards: number;
  readonly tensors: number;
  readonly parameters: number;
  readonly bytes: number;
  readonly dtypes: Record<string, DTypeCount>;
  readonly model: ModelSection | null;
  readonly adapter: AdapterSummary | null;
  /** GGUF files only (absent for safetensors): general.name, file type, tokenizer size; tensors per type are in `dtypes`. */
  readonly gguf?: GgufDescription;
}

const ROLE_ORDER: readonly LayerRole[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'fc_in', 'fc_out', 'input_norm', 'post_norm'];

/** Consecutive layers with identical role sets, collapsed into ranges. */
export function groupLayerRoles(map: ModelMap): RoleGroup[] {
  const groups: Array<{ first: number; last: number; roles: LayerRole[] }> = [];
  map.layers.forEach((layer, i) => {
    const roles = ROLE_ORDER.filter((role) => layer[role] !== undefined);
    const previous = groups[groups.length - 1];
    if (previous && previous.last === i - 1 && previous.roles.join() === roles.join()) previous.last = i;
    else groups.push({ first: i, last: i, roles });
  });
  return groups.map((g) => ({ layers: g.first === g.last ? `${g.first}` : `${g.first}-${g.last}`, roles: g.roles }));
}

function modelSection(map: ModelMap): ModelSection {
  return {
    family: map.family,
    architecture: map.architecture ?? null,
    ...map.dims,
    tiedEmbeddings: map.tiedEmbeddings,
    layerPrefix: map.layerPrefix ?? null,
    globalRoles: GLOBAL_ROLES.filter((role) => map.global[role] !== undefined),
    roles: groupLayerRoles(map),
    unmapped: [...map.unmapped],
  };
}

export function buildInspectReport(source: TensorSource): InspectReport {
  const dtypes: Record<string, { tensors: number; parameters: number }> = {};
  let parameters = 0;
  for (const info of source.tensors.values()) {
    const count = info.shape.reduce((p, d) => p * d, 1);
    parameters += count;
    const entry = (dtypes[info.dtype] ??= { tensors: 0, parameters: 0 });
    entry.tensors++;
    entry.parameters += count;
  }
  const adapter = isAdapter(source);
  const gguf = describeGguf(source);
  return {
    kind: adapter ? 'adapter' : 'model',
    name: source.name,
    path: source.path,
    files: source.files.map((f) => path.basename(f)),
    shards: source.files.length,
    tensors: source.tensors.size,
    parameters,
    bytes: source.totalBytes,
    dtypes: Object.fromEntries(Object.entries(dtypes).sort(([a], [b]) => (a < b ? -1 : 1))),
    model: adapter ? null : modelSection(mapModel(source)),
    adapter: adapter ? describeAdapter(mapAdapter(source)) : null,
    ...(gguf ? { gguf } : {}),
  };
}

/** 1234567 -> "1.23 M" (exact count kept in JSON). */
function humanCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return `${n}`;
}

function orDash(value: number | string | null): string {
  return value === null ? '-' : String(value);
}

export function renderInspectTable(report: InspectReport): string {
  const rows: Array<[string, string]> = [
    ['kind', report.kind],
    ['files', `${report.shards} (${report.files.join(', ')})`],
    ['tensors', `${report.tensors}`],
    ['parameters', `${humanCount(report.parameters)} (${report.parameters})`],
    ['dtypes', Object.entries(report.dtypes).map(([dtype, c]) => `${dtype}: ${c.tensors} tensors, ${humanCount(c.parameters)} params`).join('\n')],
  ];
  const g = report.gguf;
  if (g) {
    rows.push(
      ['GGUF', `${g.name ?? '-'}, file type ${g.fileType ?? '-'}, tokenizer ${g.tokenizerTokens ?? '-'} tokens`
        + (g.qkRowsUnpermuted ? ', q/k rows read back from llama.cpp\'s rotary order' : '')],
    );
  }
  const m = report.model;
  if (m) {
    rows.push(
      ['architecture', `${m.architecture ?? 'unknown'} (family ${m.family})`],
      ['layers', `${m.layers}${m.layerPrefix ? ` (${m.layerPrefix}.N)` : ''}`],
      ['hidden', `${m.hidden}`],
      ['heads / kv heads', `${orDash(m.heads)} / ${orDash(m.kvHeads)} (head dim ${orDash(m.headDim)})`],
      ['intermediate', orDash(m.intermediate)],
      ['vocab', orDash(m.vocab)],
      ['tied embeddings', m.tiedEmbeddings ? 'yes' : 'no'],
      ['global roles', m.globalRoles.join(' ') || '-'],
      ['layer roles', m.roles.map((g) => `${g.layers}: ${g.roles.join(' ')}`).join('\n') || '-'],
    );
    if (m.unmapped.length > 0) {
      const shown = m.unmapped.slice(0, 5).map(printable).join('\n');
      rows.push(['unmapped 2-D', m.unmapped.length > 5 ? `${shown}\n... ${m.unmapped.length - 5} more` : shown]);
    }
  }
  const a = report.adapter;
  if (a) {
    const configured = a.targetModules === null ? '' : ` (configured: ${Array.isArray(a.targetModules) ? a.targetModules.join(' ') : a.targetModules})`;
    rows.push(
      ['peft type', a.peftType],
      ['base model', orDash(a.baseModel)],
      ['rank', a.ranks.join(', ') || '-'],
      ['alpha', a.alphas.join(', ') || '-'],
      ['scale', `${a.scales.map((s) => +s.toPrecision(6)).join(', ') || '-'}${a.useRslora ? ' (rslora)' : ''}`],
      ['targets', `${a.targets.join(' ') || '-'}${configured}`],
      ['layers', a.layers.length === 0 ? '-' : `${a.layers.length} (${compactRanges(a.layers)})`],
      ['LoRA factors', `${a.factors}`],
    );
  }
  // Names and values come from files: escaped (lists above escape each name before the join), so
  // a cell's own line breaks are the only ones kept.
  const escapeCell = (cell: string): string => cell.split('\n').map(printable).join('\n');
  const table = new Table({ style: { head: [], border: [], compact: true }, wordWrap: false });
  table.push(...rows.map(([key, value]) => [key, escapeCell(value)]));
  return `${printable(`${report.name}  ${report.path}`)}\n${table.toString()}\n`;
}

/** [0,1,2,5] -> "0-2, 5". */
function compactRanges(values: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < values.length; i++) {
    let j = i;
    while (j + 1 < values.length && values[j + 1] === values[j]! + 1) j++;
    parts.push(i === j ? `${values[i]}` : `${values[i]}-${values[j]}`);
    i = j;
  }
  return parts.join(', ');
}
