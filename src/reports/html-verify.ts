/**
 * `lineage verify --html`: the verdict and p-value up front, the recovered transform, and per
 * layer and module the singular-value spectrum of the aligned delta on a log scale with the noise
 * threshold drawn, so a reader sees the low-rank gap. Plots are uPlot, inlined from node_modules.
 */
import type { ModuleEvidence, Relation, StorageQuantization, VerifyResult } from '../verify/types.js';
import { describeComponents } from '../verify/direction.js';
import { escapeHtml, formatNumber, formatPValue, htmlPage, libraryScript, readPackageAsset } from './html-page.js';
import { residualSampleNote } from './verify-text.js';

const VERDICT_WORDS: Record<Relation, string> = {
  derived: 'DERIVED',
  related: 'RELATED',
  unrelated: 'UNRELATED',
  inconclusive: 'INCONCLUSIVE',
};

/** "p2 is derived from p0": the headline sentence. */
export function verdictText(result: VerifyResult): string {
  const { base, candidate, relation } = result;
  switch (relation) {
    case 'derived': return `${candidate.name} is derived from ${base.name}`;
    case 'related': return `${candidate.name} and ${base.name} share an ancestor`;
    case 'unrelated': return `${candidate.name} and ${base.name} are unrelated`;
    case 'inconclusive': return `inconclusive: ${candidate.name} vs ${base.name}`;
  }
}

/** "low-rank r=8", "full", "unchanged": the status line of one module's plot. */
export function moduleStatusText(module: ModuleEvidence): string {
  return module.status === 'low-rank' ? `low-rank r=${module.rank}` : module.status;
}

function row(label: string, value: string): string {
  return `<tr><th>${escapeHtml(label)}</th><td>${value}</td></tr>`;
}

function modelCard(role: string, model: VerifyResult['base'], storage: StorageQuantization | null | undefined): string {
  const adapter = model.adapter
    ? row('adapter', escapeHtml(`PEFT, rank ${model.adapter.rank ?? '?'} on ${model.adapter.targets.join(', ') || '-'}`))
    : '';
  return `<div class="card"><h3>${escapeHtml(role)}: ${escapeHtml(model.name)}</h3><table>
${row('path', `<span class="mono">${escapeHtml(model.path)}</span>`)}
${row('parameters', escapeHtml(model.parameters.toLocaleString('en-US')))}
${row('dtypes', escapeHtml(model.dtypes.join(', ')))}
${storage ? row('GGUF file type', escapeHtml(storage.fileType ?? '-')) : ''}
${adapter}</table></div>`;
}

function changeCard(result: VerifyResult): string {
  const lines: string[] = [];
  if (result.lora) {
    const { rank, targets, layers, stacked, rankIsLowerBound } = result.lora;
    const bound = rankIsLowerBound ? ' <span class="muted">(at least: weaker directions may lie below the quantization floor)</span>' : '';
    lines.push(row('LoRA rank', `<strong>${rankIsLowerBound ? '≥ ' : ''}${rank}</strong>${stacked ? ' (stacked adapters)' : ''}${bound}`));
    lines.push(row('targets', escapeHtml(targets.join(', '))));
    lines.push(row('layers', escapeHtml(layers.join(', '))));
  } else {
    lines.push(row('LoRA', 'none found'));
  }
  lines.push(row('full fine-tune', result.fullFineTune ? 'yes' : 'no'));
  lines.push(row('norm growth', `${formatNumber(result.direction.normGrowth)} <span class="muted">(1: base + update, 0: siblings, −1: reversed)</span>`));
  if (result.direction.components) lines.push(row('norm growth by component', escapeHtml(describeComponents(result.direction.components))));
  lines.push(row('kurtosis base / candidate', `${formatNumber(result.direction.kurtosisBase)} / ${formatNumber(result.direction.kurtosisCandidate)}`));
  lines.push(row('alignment quality', formatNumber(result.alignmentQuality)));
  return `<div class="card"><h3>What changed</h3><table>${lines.join('\n')}</table></div>`;
}

function transformSection(result: VerifyResult): string {
  const t = result.transform;
  const summary = t.identity
    ? '<p>No permutation or rescaling: the weights were compared as stored.</p>'
    : `<ul class="transform-summary">${t.summary.map((line) => `<li>${escapeHtml(line)}</li>`).join('')}</ul>`;
  const global = `<p class="muted">Residual-stream dimensions permuted: ${t.residualPermuted}; largest norm-folding |log scale|: ${formatNumber(t.normFoldingMaxLogScale)}.</p>`;
  const layerRows = t.layers.map((l) => `<tr><td class="num">${l.layer}</td><td class="num">${l.mlpNeuronsPermuted}</td>`
    + `<td class="num">${formatNumber(l.mlpScaleMaxLog)}</td><td class="mono">${escapeHtml(l.kvGroupOrder.join(' '))}</td>`
    + `<td class="mono">${escapeHtml(l.queryHeadOrder.join(' '))}</td><td class="num">${formatNumber(l.qkScaleMaxLog)}</td>`
    + `<td class="num">${formatNumber(l.voScaleMaxLog)}</td></tr>`).join('\n');
  const table = t.layers.length === 0 ? '' : `<table class="transform-layers"><thead><tr><th>layer</th><th>MLP neurons moved</th>`
    + `<th>MLP max |log scale|</th><th>KV group order</th><th>query head order</th><th>QK max |log scale|</th><th>VO max |log scale|</th></tr></thead>
<tbody>${layerRows}</tbody></table>`;
  return `<h2>Recovered transform</h2>${summary}${global}${table}`;
}

function independenceSection(result: VerifyResult): string {
  const test = result.independence;
  const rows = test.perLayer.map((l) => `<tr><td class="num">${l.layer}</td><td class="num">${formatNumber(l.spearman)}</td><td class="num">${formatNumber(l.z)}</td><td class="num">${l.rowsUsed} of ${l.rows}</td></tr>`).join('\n');
  return `<h2>Shared-initialisation test</h2>
<p>${escapeHtml(test.method)}: statistic ${formatNumber(test.statistic)}, p = ${formatPValue(test.log10PValue)}, on ${test.rowsUsed} of ${test.rows} neurons (zero, constant or repeated rows carry no evidence).</p>
<table><thead><tr><th>layer</th><th>Spearman</th><th>z</th><th>neurons used</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** One plot per module: the data the page script hands to uPlot. */
export interface SpectrumPlot {
  readonly id: string;
  readonly layer: number;
  readonly module: string;
  readonly status: ModuleEvidence['status'];
  readonly singularValues: readonly number[];
  readonly threshold: number;
}

export function spectrumPlots(result: VerifyResult): SpectrumPlot[] {
  return result.layers.flatMap((layer) => layer.modules.map((m) => ({
    id: `spectrum-${layer.layer}-${m.module}`,
    layer: layer.layer,
    module: m.module,
    status: m.status,
    singularValues: m.singularValues,
    threshold: m.threshold,
  })));
}

/**
 * One log-scale y range for every plot, so heights compare across modules: from just below the
 * smallest positive value to just above the largest, always including the threshold.
 */
export function sharedLogRange(plots: readonly SpectrumPlot[]): [number, number] {
  let low = Infinity;
  let high = -Infinity;
  for (const plot of plots) {
    for (const v of [...plot.singularValues, plot.threshold]) {
      if (v > 0 && Number.isFinite(v)) {
        low = Math.min(low, v);
        high = Math.max(high, v);
      }
    }
  }
  if (!(low <= high)) return [0.1, 10];
  return [low / 1.5, high * 1.5];
}

function spectraSection(result: VerifyResult): string {
  const layers = result.layers.map((layer) => {
    const cells = layer.modules.map((m) => `<figure class="spectrum status-${m.status}" id="spectrum-${layer.layer}-${escapeHtml(m.module)}" data-layer="${layer.layer}" data-module="${escapeHtml(m.module)}">
<figcaption><strong>${escapeHtml(m.module)}</strong> <span class="badge">${escapeHtml(moduleStatusText(m))}</span>
<span class="muted">‖Δ‖/‖W‖ ${formatNumber(m.relativeDelta)}</span></figcaption><div class="plot"></div></figure>`).join('\n');
    const probe = layer.probeRank === null ? '' : `, probe rank ${layer.probeRank}`;
    return `<section class="layer"><h3>Layer ${layer.layer} <span class="muted">(invariants: QK cos ${formatNumber(layer.invariants.qk)}, VO cos ${formatNumber(layer.invariants.vo)}${probe})</span></h3>
<div class="spectra">${cells}</div></section>`;
  }).join('\n');
  const method = result.layers[0]?.modules[0]?.thresholdMethod;
  const sample = residualSampleNote(result);
  return `<h2>Singular-value spectra of the aligned delta</h2>
<p class="muted">Singular values of candidate − base after alignment, noise-whitened, in units of the noise threshold (log scale).
Points above the dashed red line are real change; a low-rank update shows as a few points above it and a cliff.${method ? ` Threshold: ${escapeHtml(method)}.` : ''}</p>
${sample ? `<p class="muted">${escapeHtml(sample)}.</p>\n` : ''}${layers}`;
}

const VERIFY_STYLES = `
.verdict { display: flex; align-items: baseline; gap: 18px; flex-wrap: wrap; margin: 6px 0 4px; }
.verdict .relation { font-size: 28px; font-weight: 800; letter-spacing: .04em; padding: 2px 14px; border-radius: 6px; color: #fff; }
.relation-derived { background: var(--good); } .relation-related { background: var(--accent); }
.relation-unrelated { background: var(--bad); } .relation-inconclusive { background: var(--warn); }
.verdict .headline { font-size: 20px; font-weight: 600; }
.verdict .pvalue { font-size: 18px; font-variant-numeric: tabular-nums; }
.reason { margin: 4px 0 0; font-size: 15px; }
.spectra { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); gap: 10px; }
figure.spectrum { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px 6px 2px; }
figure.spectrum figcaption { font-size: 13px; margin: 0 4px 2px; }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 12px; background: var(--panel); border: 1px solid var(--line); }
.status-low-rank .badge { background: #dafbe1; border-color: #4ac26b; }
.status-full .badge { background: #ffebe9; border-color: #ff8182; }
.uplot .u-title { font-size: 12px; font-weight: 600; }
`;

/** Runs in the browser: one uPlot per figure.spectrum, log-scale y, threshold as a dashed line. */
const VERIFY_SCRIPT = `
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  data.plots.forEach(function (plot) {
    var figure = document.getElementById(plot.id);
    var target = figure.querySelector('.plot');
    var n = plot.singularValues.length;
    var xs = [], values = [], threshold = [];
    for (var i = 0; i < Math.max(n, 1); i++) {
      xs.push(i + 1);
      var v = plot.singularValues[i];
      values.push(v > 0 ? v : null); // log scale: zeros have no place on it
      threshold.push(plot.threshold);
    }
    new uPlot({
      width: Math.max(240, target.clientWidth || 260), height: 170,
      legend: { show: false }, cursor: { show: true, points: { show: false } },
      scales: { x: { time: false }, y: { distr: 3, log: 10, range: function () { return data.yRange; } } },
      axes: [
        { label: 'index', size: 34, labelSize: 14, font: '11px system-ui', labelFont: '11px system-ui' },
        { label: 'σ / threshold', size: 46, labelSize: 14, font: '11px system-ui', labelFont: '11px system-ui' }
      ],
      series: [
        {},
        { label: 'singular value', stroke: '#0969da', width: 1.5, points: { show: true, size: 5, fill: '#0969da' } },
        { label: 'noise threshold', stroke: '#cf222e', width: 1.5, dash: [6, 4], points: { show: false } }
      ]
    }, [xs, values, threshold], target);
    figure.setAttribute('data-drawn', 'true');
  });
  document.body.setAttribute('data-plots-drawn', String(data.plots.length));
})();
`;

/** The self-contained HTML report of one verify result. */
export function renderVerifyHtml(result: VerifyResult): string {
  const plots = spectrumPlots(result);
  const body = `<header class="page">
<div class="sub">model-lineage verify report</div>
<div class="verdict"><span class="relation relation-${result.relation}" id="verdict">${VERDICT_WORDS[result.relation]}</span>
<span class="headline" id="headline">${escapeHtml(verdictText(result))}</span>
<span class="pvalue" id="pvalue">p = ${formatPValue(result.log10PValue)}</span></div>
<p class="reason">${escapeHtml(result.reason)}</p>
</header>
<main>
<div class="cards">${modelCard('base', result.base, result.quantization?.base)}${modelCard('candidate', result.candidate, result.quantization?.candidate)}${changeCard(result)}</div>
${transformSection(result)}
${spectraSection(result)}
${independenceSection(result)}
</main>
<footer class="page">Read ${formatNumber(result.timings.readSeconds)} s, align ${formatNumber(result.timings.alignSeconds)} s, analyse ${formatNumber(result.timings.analyseSeconds)} s, total ${formatNumber(result.timings.totalSeconds)} s. Schema ${escapeHtml(result.schema)}.</footer>`;
  return htmlPage({
    title: `verify: ${result.candidate.name} vs ${result.base.name} (${result.relation})`,
    styles: readPackageAsset('uplot', 'dist/uPlot.min.css') + VERIFY_STYLES,
    body,
    data: { plots, yRange: sharedLogRange(plots) },
    libraries: [libraryScript('uplot', 'dist/uPlot.iife.min.js')],
    script: VERIFY_SCRIPT,
  });
}
