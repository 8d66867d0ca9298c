/**
 * WebAssembly text of the dense product kernels (see gemm.ts), generated here so the register
 * blocking is written once; scripts/build-gemm-wasm.ts compiles it. Pointers are byte offsets of
 * float64 arrays in the module's memory.
 *
 * gemm_nt(a, b, out, m, n, k, j0, j1, p0, p1), behind matmulTransB, adds
 * sum_{p0 <= p < p1} a[i*k + p] * b[j*k + p] to out[i*n + j] for i < m, j0 <= j < j1. Blocks of
 * 4 rows of A by 2 rows of B keep 8 f64x2 accumulators in registers; p runs in pairs (one 128-bit
 * load per row), an odd last p and the row and column remainders take narrower blocks.
 *
 * gram_pack and gram_upper, behind gram, accumulate the upper triangle of XᵀX over blocks of rows
 * of X (see gramUpper).
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

/** Columns of X in a panel of gram_pack, and the side of gram_upper's square tiles. */
export const GRAM_PANEL = 4;

/**
 * gram_pack(src, dst, columns, rows, rowStride, columnStride): element (t, c) of a block of X,
 * read at src + t·rowStride + c·columnStride (bytes; X's rows or its columns, so one routine
 * packs a block of A for AᵀA and of Aᵀ for A·Aᵀ), goes to dst in panels of GRAM_PANEL columns:
 * entry (t, 4p + q) at dst[(p·rows + t)·4 + q], zero beyond the last column. A tile then reads
 * both its panels front to back.
 */
function gramPack(): string {
  const copy = (q: number) => `(f64.store offset=${8 * q} (local.get $to) (f64.load (i32.add (local.get $from) (local.get $step${q}))))`;
  const copyOrZero = (q: number) =>
    `(if (i32.lt_u (i32.const ${q}) (local.get $left)) (then ${copy(q)}) (else (f64.store offset=${8 * q} (local.get $to) (f64.const 0))))`;
  const rowsOfPanel = (label: string, body: string) => `(block $${label}Done (loop $${label}
        (br_if $${label}Done (i32.ge_u (local.get $to) (local.get $end)))
        ${body}
        (local.set $from (i32.add (local.get $from) (local.get $rowStride)))
        (local.set $to (i32.add (local.get $to) (i32.const ${8 * GRAM_PANEL})))
        (br $${label})))`;
  const quarters = Array.from({ length: GRAM_PANEL }, (_, q) => q);
  return `(func (export "gram_pack") (param $src i32) (param $dst i32) (param $columns i32) (param $rows i32)
        (param $rowStride i32) (param $columnStride i32)
    (local $c i32) (local $left i32) (local $from i32) (local $to i32) (local $end i32) ${quarters.map((q) => `(local $step${q} i32)`).join(' ')}
    ${quarters.map((q) => `(local.set $step${q} (i32.mul (local.get $columnStride) (i32.const ${q})))`).join('\n')}
    (local.set $to (local.get $dst))
    (block $panelsDone (loop $panels
      (br_if $panelsDone (i32.ge_u (local.get $c) (local.get $columns)))
      (local.set $left (i32.sub (local.get $columns) (local.get $c)))
      (local.set $from (i32.add (local.get $src) (i32.mul (local.get $c) (local.get $columnStride))))
      (local.set $end (i32.add (local.get $to) (i32.mul (local.get $rows) (i32.const ${8 * GRAM_PANEL}))))
      (if (i32.ge_u (local.get $left) (i32.const ${GRAM_PANEL}))
        (then ${rowsOfPanel('full', quarters.map(copy).join('\n'))})
        (else ${rowsOfPanel('part', quarters.map(copyOrZero).join('\n'))}))
      (local.set $c (i32.add (local.get $c) (i32.const ${GRAM_PANEL})))
      (br $panels)))
  )`;
}

/**
 * gram_upper(x, out, n, rows): out[i*n + j] += sum_t X[t][i]·X[t][j] over the `rows` rows of a
 * packed block x (gram_pack) of n columns, n a multiple of GRAM_PANEL, for every tile on or above
 * the diagonal (the diagonal tiles whole). Each step of a tile is a rank-1 update of its 4×4
 * entries from one row: two loads of the j panel, four splatted loads of the i panel, 8 f64x2
 * accumulators that stay in registers over all the rows, no horizontal sums.
 */
function gramUpper(): string {
  const acc = (r: number, v: number) => `$acc${r}${v}`;
  const accumulators: string[] = [];
  for (let r = 0; r < GRAM_PANEL; r++) for (let v = 0; v < GRAM_PANEL / 2; v++) accumulators.push(acc(r, v));
  const row = (r: number) => `(i32.add (local.get $o) (i32.mul (local.get $outStride) (i32.const ${r})))`;
  const tile = (action: (r: number, v: number) => string) => {
    const lines: string[] = [];
    for (let r = 0; r < GRAM_PANEL; r++) for (let v = 0; v < GRAM_PANEL / 2; v++) lines.push(action(r, v));
    return lines.join('\n');
  };
  const step: string[] = [];
  for (let v = 0; v < GRAM_PANEL / 2; v++) step.push(`(local.set $b${v} (v128.load offset=${16 * v} (local.get $pj)))`);
  for (let r = 0; r < GRAM_PANEL; r++) {
    step.push(`(local.set $s (v128.load64_splat offset=${8 * r} (local.get $pi)))`);
    for (let v = 0; v < GRAM_PANEL / 2; v++) {
      step.push(`(local.set ${acc(r, v)} (f64x2.add (local.get ${acc(r, v)}) (f64x2.mul (local.get $s) (local.get $b${v}))))`);
    }
  }
  return `(func (export "gram_upper") (param $x i32) (param $out i32) (param $n i32) (param $rows i32)
    (local $i i32) (local $j i32) (local $pi i32) (local $pj i32) (local $iPanel i32) (local $end i32)
    (local $o i32) (local $outStride i32) (local $panelBytes i32) (local $s v128)
    ${Array.from({ length: GRAM_PANEL / 2 }, (_, v) => `(local $b${v} v128)`).join(' ')}
    ${accumulators.map((a) => `(local ${a} v128)`).join(' ')}
    (if (i32.eqz (local.get $rows)) (then (return)))
    (local.set $outStride (i32.shl (local.get $n) (i32.const 3)))
    (local.set $panelBytes (i32.mul (local.get $rows) (i32.const ${8 * GRAM_PANEL})))
    (local.set $iPanel (local.get $x))
    (block $idone (loop $iTiles
      (br_if $idone (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $j (local.get $i))
      (local.set $pj (local.get $iPanel))
      (block $jdone (loop $jTiles
        (br_if $jdone (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $o (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $n)) (local.get $j)) (i32.const 3))))
        ${tile((r, v) => `(local.set ${acc(r, v)} (v128.load offset=${16 * v} ${row(r)}))`)}
        (local.set $pi (local.get $iPanel))
        (local.set $end (i32.add (local.get $pj) (local.get $panelBytes)))
        (loop $steps
          ${step.join('\n')}
          (local.set $pi (i32.add (local.get $pi) (i32.const ${8 * GRAM_PANEL})))
          (local.set $pj (i32.add (local.get $pj) (i32.const ${8 * GRAM_PANEL})))
          (br_if $steps (i32.lt_u (local.get $pj) (local.get $end))))
        ${tile((r, v) => `(v128.store offset=${16 * v} ${row(r)} (local.get ${acc(r, v)}))`)}
        (local.set $j (i32.add (local.get $j) (i32.const ${GRAM_PANEL})))
        (br $jTiles)))
      (local.set $iPanel (i32.add (local.get $iPanel) (local.get $panelBytes)))
      (local.set $i (i32.add (local.get $i) (i32.const ${GRAM_PANEL})))
      (br $iTiles)))
  )`;
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
      (br $rows1))))
  ${gramPack()}
  ${gramUpper()}
)
`;
}
