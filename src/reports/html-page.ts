/**
 * The shell shared by the HTML reports: one self-contained page (styles, scripts and data
 * inlined, nothing fetched at view time), plus the escaping and number formatting they share.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { BadInputError } from '../io/errors.js';

const requireFromHere = createRequire(import.meta.url);

/** Text of a file shipped inside an installed package, e.g. ("uplot", "dist/uPlot.min.css"). */
export function readPackageAsset(packageName: string, relativePath: string): string {
  const manifest = requireFromHere.resolve(`${packageName}/package.json`);
  return readFileSync(path.join(path.dirname(manifest), relativePath), 'utf8');
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON safe to place inside <script>: no "</script", "<!--" or line separators can end it early. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** Inlined script text must not contain a closing tag; library code is checked, not rewritten. */
function assertInlineable(code: string, what: string): string {
  if (/<\/script/i.test(code)) throw new Error(`${what} contains "</script" and cannot be inlined`);
  return code;
}

/** Four significant digits; exponent form outside [1e-3, 1e4). */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  return Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? String(Number(x.toPrecision(4))) : x.toExponential(2);
}

/**
 * A p-value from its base-10 logarithm, so values far below the smallest double still read
 * correctly: -45.5 -> "3.16e-46", -1234.2 -> "6.31e-1235", -0.3 -> "0.501".
 */
export function formatPValue(log10PValue: number): string {
  if (!Number.isFinite(log10PValue)) return log10PValue < 0 ? '0' : String(log10PValue);
  if (log10PValue >= -3) return String(Number((10 ** log10PValue).toPrecision(3)));
  let exponent = Math.floor(log10PValue);
  let mantissa = 10 ** (log10PValue - exponent);
  if (Number(mantissa.toFixed(2)) >= 10) {
    mantissa /= 10;
    exponent += 1;
  }
  return `${mantissa.toFixed(2)}e${exponent}`;
}

export interface PageParts {
  readonly title: string;
  /** Page-specific CSS, appended to the shared style sheet. */
  readonly styles?: string;
  /** Already-escaped HTML of the body. */
  readonly body: string;
  /** Data the page script reads as JSON from #report-data. */
  readonly data: unknown;
  /** Library scripts to inline before the page script (already checked with libraryScript). */
  readonly libraries?: readonly string[];
  /** The page's own script. */
  readonly script: string;
}

/** Code of a library, read from node_modules and checked for inlining. */
export function libraryScript(packageName: string, relativePath: string): string {
  return assertInlineable(readPackageAsset(packageName, relativePath), `${packageName}/${relativePath}`);
}

const SHARED_STYLES = `
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --panel: #f6f8fa; --accent: #0969da;
  --good: #1a7f37; --warn: #9a6700; --bad: #cf222e; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink); background: #fff; }
header.page { padding: 20px 28px 12px; border-bottom: 1px solid var(--line); }
header.page h1 { margin: 0 0 4px; font-size: 22px; }
header.page .sub { color: var(--muted); }
main { padding: 16px 28px 40px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
h3 { font-size: 15px; margin: 18px 0 8px; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 4px 10px 4px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; text-align: right; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.cards { display: flex; flex-wrap: wrap; gap: 14px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; background: var(--panel); min-width: 240px; }
.card h3 { margin-top: 0; }
.muted { color: var(--muted); }
footer.page { color: var(--muted); padding: 0 28px 24px; font-size: 12px; }
`;

export function htmlPage(parts: PageParts): string {
  const libraries = (parts.libraries ?? []).map((code) => `<script>${code}</script>`).join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(parts.title)}</title>
<style>${SHARED_STYLES}${parts.styles ?? ''}</style>
</head>
<body>
${parts.body}
<script type="application/json" id="report-data">${jsonForScript(parts.data)}</script>
${libraries}
<script>${assertInlineable(parts.script, 'page script')}</script>
</body>
</html>
`;
}

/** Write a finished report; a path that cannot be written is the user's input error, not a bug. */
export function writeReportFile(file: string, html: string): void {
  try {
    writeFileSync(file, html);
  } catch (err) {
    throw new BadInputError(`cannot write the HTML report (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { file });
  }
}
