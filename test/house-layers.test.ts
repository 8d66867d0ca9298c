/**
 * The house stays in order: data flows one way (files -> io -> arch -> analyses -> store and
 * reports -> api -> cli), so no folder of src/ imports from a folder above it, and the analysis
 * folders never touch the file system (no node:fs, none of io's functions that open, read or
 * write files by path) and read weights by role through arch's RoleReader, never a TensorSource.
 * The checker is run on small made-up sources first, so this test can fail; then on the real src/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Each folder of src/ and its rank: a file may import from its own folder or from a folder of
 * lower rank only (equal ranks are independent of each other). Keep in step with the README's
 * architecture section.
 */
const LAYER_RANK: Readonly<Record<string, number>> = {
  io: 0, linalg: 0, stats: 0, threads: 0,
  arch: 1,
  noise: 2, sketch: 2,
  align: 3,
  verify: 4,
  tree: 5,
  store: 6, reports: 6,
  registry: 7, workers: 7,
  api: 8,
  cli: 9,
  '.': 10, // src/index.ts, the library's entry
};

/** Folders that analyse weights: they get tensors through sources and readers, never files. */
const ANALYSIS_FOLDERS = new Set(['noise', 'align', 'verify', 'tree', 'sketch', 'stats', 'linalg']);
const FILE_SYSTEM_MODULES = new Set(['fs', 'node:fs', 'fs/promises', 'node:fs/promises']);
/** io's functions that take a path (open, read or write a file), and the weight files' keys. */
const FILE_FUNCTION = /^(open|read|write)[A-Z]|^(contentFingerprint|sketchCacheKey|ggufSplitFiles)$/;

interface Import {
  readonly specifier: string;
  /** Names imported (empty for `* as`, side-effect and dynamic imports). */
  readonly names: readonly string[];
}

function importsOf(source: string): Import[] {
  const found: Import[] = [];
  const statement = /(?:^|\n)\s*(?:import|export)\s+(type\s+)?((?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?|[\w$]+))\s*from\s*['"]([^'"]+)['"]/g;
  for (const m of source.matchAll(statement)) {
    const braces = /\{([^}]*)\}/.exec(m[2]!);
    const names = braces
      ? braces[1]!.split(',').map((n) => n.trim().replace(/^type\s+/, '').split(/\s+as\s+/)[0]!).filter(Boolean)
      : [];
    found.push({ specifier: m[3]!, names });
  }
  for (const m of source.matchAll(/(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g)) found.push({ specifier: m[1]!, names: [] });
  for (const m of source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push({ specifier: m[1]!, names: [] });
  return found;
}

/** The src/ folder a file (path relative to src/, '/'-separated) lives in: '.' for src/index.ts. */
function folderOf(file: string): string {
  const slash = file.indexOf('/');
  return slash < 0 ? '.' : file.slice(0, slash);
}

/** Every broken rule of `files` (path relative to src/ -> source text), one line each. */
function houseViolations(files: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  for (const [file, source] of files) {
    const folder = folderOf(file);
    const rank = LAYER_RANK[folder];
    if (rank === undefined) {
      problems.push(`${file}: folder src/${folder} has no place in the layer order (add it to LAYER_RANK and the README)`);
      continue;
    }
    for (const { specifier, names } of importsOf(source)) {
      if (ANALYSIS_FOLDERS.has(folder) && FILE_SYSTEM_MODULES.has(specifier)) {
        problems.push(`${file}: an analysis imports ${specifier}; read through io's sources and arch's readers instead`);
      }
      if (!specifier.startsWith('.')) continue;
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
      if (target.startsWith('..')) {
        problems.push(`${file}: imports ${specifier}, outside src/`);
        continue;
      }
      const targetFolder = folderOf(target);
      const targetRank = LAYER_RANK[targetFolder];
      if (targetFolder !== folder && (targetRank === undefined || targetRank >= rank)) {
        problems.push(`${file}: src/${folder} (layer ${rank}) imports ${target} (src/${targetFolder}, layer ${targetRank ?? '?'})`);
      }
      if (ANALYSIS_FOLDERS.has(folder) && targetFolder === 'io') {
        for (const name of names.filter((n) => FILE_FUNCTION.test(n))) {
          problems.push(`${file}: an analysis imports ${name} from ${target}, which opens files`);
        }
        if (names.includes('TensorSource')) problems.push(`${file}: an analysis reads a TensorSource; read roles through arch's RoleReader`);
      }
    }
  }
  return problems;
}

test('the house checker finds upward imports and file access in analyses', () => {
  const made = new Map([
    ['io/source.ts', "import * as fs from 'node:fs';\nexport function openTensorSource() {}\n"],
    ['linalg/ops.ts', "import { verifyModels } from '../verify/verify.js';\n"],
    ['align/fit.ts', "import type { Matrix } from '../linalg/matrix.js';\nimport { readFileSync } from 'node:fs';\n"],
    ['sketch/load.ts', "import {\n  assertTensorFinite,\n  openTensorSource as open,\n} from '../io/source.js';\n"],
    ['sketch/raw.ts', "import type { TensorSource } from '../io/types.js';\n"],
    ['tree/lazy.ts', "const m = await import('../api/tree.js');\n"],
    ['stats/side.ts', "import '../linalg/ops.js';\n"],
    ['gadgets/x.ts', "export const x = 1;\n"],
    ['cli/main.ts', "import { tree } from '../api/tree.js';\nimport { readFileSync } from 'node:fs';\n"],
  ]);
  const problems = houseViolations(made);
  const hit = (file: string, what: RegExp) => assert.ok(problems.some((p) => p.startsWith(file) && what.test(p)), `${file} ${what}: ${problems.join(' | ')}`);
  hit('linalg/ops.ts', /imports verify\/verify\.js/);
  hit('align/fit.ts', /node:fs/);
  hit('sketch/load.ts', /openTensorSource/);
  hit('sketch/raw.ts', /RoleReader/);
  hit('tree/lazy.ts', /imports api\/tree\.js/);
  hit('stats/side.ts', /imports linalg\/ops\.js .*layer 0/); // equal ranks stay independent
  hit('gadgets/x.ts', /no place in the layer order/);
  assert.ok(!problems.some((p) => p.startsWith('io/') || p.startsWith('cli/')), problems.join(' | ')); // io and cli may use files
  assert.ok(!problems.some((p) => /assertTensorFinite/.test(p)), 'reading a source is not opening a file');
  assert.equal(problems.length, 7, problems.join('\n'));
});

test('src/: no import from a higher layer, no file system in noise, align, verify, tree, sketch, stats, linalg', (t) => {
  // Compiled to dist/test/: the sources are two folders up.
  const srcDir = fileURLToPath(new URL('../../src/', import.meta.url));
  if (!fs.existsSync(path.join(srcDir, 'index.ts'))) {
    t.skip(`the TypeScript sources are not next to this build (${srcDir})`);
    return;
  }
  const files = new Map<string, string>();
  for (const entry of fs.readdirSync(srcDir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const full = path.join(entry.parentPath, entry.name);
    files.set(path.relative(srcDir, full).split(path.sep).join('/'), fs.readFileSync(full, 'utf8'));
  }
  assert.ok(files.size > 50, `only ${files.size} sources found under ${srcDir}`);
  assert.deepEqual(houseViolations(files), []);
});
