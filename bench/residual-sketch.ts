/**
 * Micro-benchmark of the residual-side sketch of wide layers (src/align/residual-sketch.ts), the
 * largest cost of verify on a 7B pair: ns per stored value for a reader (gate-like, rows x hidden)
 * and a writer (down-like, hidden x rows) from stored bf16 bytes, against the plainest pass over
 * the same bytes (bf16 widened to float32 and summed), which bounds what any kernel can reach
 * on this machine's memory.
 *
 *   node dist/bench/residual-sketch.js [--hidden 4096] [--lines 11008] [--repeat 3]
 *
 * Single-threaded; prints the best of the repeats.
 */
import { residualPlacement, residualSketchMap, rowsOfStored, sketchResidualSide } from '../src/align/residual-sketch.js';
import { Rng } from '../src/linalg/rng.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const hidden = arg('hidden', 4096), lines = arg('lines', 11008), repeat = arg('repeat', 3);
const count = hidden * lines;
const rng = new Rng(5);
// bf16 patterns of small Gaussian weights (the top halves of their float32 bits).
const values = new Float32Array(count);
for (let i = 0; i < count; i++) values[i] = 0.02 * rng.gaussian();
const bits = new Uint32Array(values.buffer);
const halves = Uint16Array.from(bits, (b) => b >>> 16);
const bytes = new Uint8Array(halves.buffer);

const map = residualSketchMap(hidden)!;
const gain = Float64Array.from({ length: hidden }, (_, j) => 0.5 + (j % 7) / 7);
const stored = (rows: number, cols: number) => rowsOfStored({ rows, cols, dtype: 'BF16', bytes, tensor: 'bench', file: 'bench' });

function best(f: () => void): number {
  let least = Infinity;
  for (let r = 0; r < repeat; r++) {
    const started = performance.now();
    f();
    least = Math.min(least, (performance.now() - started) * 1e6 / count);
  }
  return least;
}

const plain = best(() => {
  const piece = new Float32Array(1 << 14);
  const wide = new Uint32Array(piece.buffer);
  let sum = 0;
  for (let start = 0; start < count; start += piece.length) {
    const n = Math.min(piece.length, count - start);
    for (let i = 0; i < n; i++) wide[i] = halves[start + i]! << 16;
    for (let i = 0; i < n; i++) sum += piece[i]!;
  }
  if (Number.isNaN(sum)) throw new Error('unreachable');
});
const reader = best(() => sketchResidualSide(stored(lines, hidden), 'cols', residualPlacement(map, null, gain), null));
const writer = best(() => sketchResidualSide(stored(hidden, lines), 'rows', residualPlacement(map, null, null), null));

console.log(`residual sketch, hidden ${hidden}, ${lines} lines, width ${map.width}, bf16, one thread (best of ${repeat})`);
console.log(`  plain pass (widen + sum): ${plain.toFixed(2)} ns a value`);
console.log(`  reader (${lines} x ${hidden} -> ${lines} x ${map.width}): ${reader.toFixed(2)} ns a value, ${(reader / plain).toFixed(1)}x the plain pass`);
console.log(`  writer (${hidden} x ${lines} -> ${map.width} x ${lines}): ${writer.toFixed(2)} ns a value, ${(writer / plain).toFixed(1)}x the plain pass`);
