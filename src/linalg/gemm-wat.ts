/**
 * WebAssembly text of the product kernel behind matmulTransB (see gemm.ts), generated here so the
 * register blocking is written once: gemm_nt(a, b, out, m, n, k, j0, j1, p0, p1) adds
 * sum_{p0 <= p < p1} a[i*k + p] * b[j*k + p] to out[i*n + j] for i < m, j0 <= j < j1 (byte
 * offsets of float64 arrays in the module's memory). Blocks of 4 rows of A by 2 rows of B keep 8
 * f64x2 accumulators in registers; p runs in pairs (one 128-bit load per row), an odd last p and
 * the row and column remainders take narrower blocks. scripts/build-gemm-wasm.ts compiles it.
 */

/** Code for one block of `rows` rows of A (from $i) by `cols` rows of B (from $j). */
function block(rows: number, cols: number): string {
  const acc = (r: number, c: number) => `$acc${r}${c}`;
  const tag = `${rows}${cols}`;
  const lines: string[] = [];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) lines.push(`(local.set ${acc(r, c)} (f64x2.splat (f64.const 0)))`);
  const rowPointer = (base: string, index: string, offset: number) =>
    `(i32.add (local.get ${base}) (i32.shl (i32.add (i32.mul (i32.add (local.get ${index}) (i32.const ${offset})) (local.get $k)) (local.get $p0)) (i32.const 3)))`;
  for (let r = 0; r < rows; r++) lines.push(`(local.set $pa${r} ${rowPointer('$a', '$i', r)})`);
  for (let c = 0; c < cols; c++) lines.push(`(local.set $pb${c} ${rowPointer('$b', '$j', c)})`);
  lines.push('(local.set $p (local.get $p0))');
  lines.push(`(block $done${tag} (loop $pairs${tag}`);
  lines.push(`  (br_if $done${tag} (i32.gt_s (i32.add (local.get $p) (i32.const 2)) (local.get $p1)))`);
  for (let r = 0; r < rows; r++) lines.push(`  (local.set $va${r} (v128.load (local.get $pa${r})))`);
  for (let c = 0; c < cols; c++) lines.push(`  (local.set $vb${c} (v128.load (local.get $pb${c})))`);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      lines.push(`  (local.set ${acc(r, c)} (f64x2.add (local.get ${acc(r, c)}) (f64x2.mul (local.get $va${r}) (local.get $vb${c}))))`);
    }
  }
  for (let r = 0; r < rows; r++) lines.push(`  (local.set $pa${r} (i32.add (local.get $pa${r}) (i32.const 16)))`);
  for (let c = 0; c < cols; c++) lines.push(`  (local.set $pb${c} (i32.add (local.get $pb${c}) (i32.const 16)))`);
  lines.push('  (local.set $p (i32.add (local.get $p) (i32.const 2)))');
  lines.push(`  (br $pairs${tag})))`);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const lanes = `(f64.add (f64x2.extract_lane 0 (local.get ${acc(r, c)})) (f64x2.extract_lane 1 (local.get ${acc(r, c)})))`;
      const odd = `(if (result f64) (i32.lt_s (local.get $p) (local.get $p1)) (then (f64.mul (f64.load (local.get $pa${r})) (f64.load (local.get $pb${c})))) (else (f64.const 0)))`;
      const at = `(i32.add (local.get $out) (i32.shl (i32.add (i32.mul (i32.add (local.get $i) (i32.const ${r})) (local.get $n)) (i32.add (local.get $j) (i32.const ${c}))) (i32.const 3)))`;
      lines.push(`(local.set $o ${at})`);
      lines.push(`(f64.store (local.get $o) (f64.add (f64.load (local.get $o)) (f64.add ${lanes} ${odd})))`);
    }
  }
  return lines.join('\n');
}

/** Loop over j in steps of `cols` for the current $i, then the single remaining column if any. */
function columns(rows: number, cols: number, tag: string): string {
  return `(local.set $j (local.get $j0))
(block $cdone${tag} (loop $cols${tag}
  (br_if $cdone${tag} (i32.gt_s (i32.add (local.get $j) (i32.const ${cols})) (local.get $j1)))
  ${block(rows, cols)}
  (local.set $j (i32.add (local.get $j) (i32.const ${cols})))
  (br $cols${tag})))
(if (i32.lt_s (local.get $j) (local.get $j1)) (then ${block(rows, 1)}))`;
}

export function gemmWat(): string {
  const locals: string[] = [];
  for (let r = 0; r < 4; r++) for (let c = 0; c < 2; c++) locals.push(`(local $acc${r}${c} v128)`);
  for (let r = 0; r < 4; r++) locals.push(`(local $pa${r} i32) (local $va${r} v128)`);
  for (let c = 0; c < 2; c++) locals.push(`(local $pb${c} i32) (local $vb${c} v128)`);
  return `(module
  (memory (export "memory") 1)
  (func (export "gemm_nt") (param $a i32) (param $b i32) (param $out i32) (param $m i32) (param $n i32) (param $k i32)
        (param $j0 i32) (param $j1 i32) (param $p0 i32) (param $p1 i32)
    (local $i i32) (local $j i32) (local $p i32) (local $o i32)
    ${locals.join(' ')}
    (local.set $i (i32.const 0))
    (block $rdone4 (loop $rows4
      (br_if $rdone4 (i32.gt_s (i32.add (local.get $i) (i32.const 4)) (local.get $m)))
      ${columns(4, 2, 'a')}
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $rows4)))
    (block $rdone1 (loop $rows1
      (br_if $rdone1 (i32.ge_s (local.get $i) (local.get $m)))
      ${columns(1, 2, 'b')}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $rows1)))))
`;
}
