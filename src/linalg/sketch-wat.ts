/**
 * WebAssembly text of the streaming sketch kernel (see stream-sketch.ts), generated here so the
 * three storage modes share one body; scripts/build-gemm-wasm.ts compiles it.
 *
 * sketch_rows_<mode>(in, rows, cols, k2, signs, fold, colVar, rowVar, sums, rowStart, k1, rowSigns,
 * sketch, minNormal, ulpScale) takes `rows` stored rows of `cols` values at `in` and, in one pass
 * over each value (4 lanes at a time):
 * - decodes it: bf16 by a 16-bit shift, f32 as is, f16 by moving and scaling its bits, or f32 or
 *   f16 rounded to the nearest bf16 (ties to even), the bf16 view of a finer model;
 * - adds its rounding variance (max(2^e, minNormal) * ulpScale)^2, the exponent taken from the
 *   bits, into the row's sum and into its column bucket j mod k2 (colVar, float32, flushed by the
 *   caller every block);
 * - adds it, its sign flipped by the column's mask, into the row's fold (fold + row * k2: the
 *   CountSketch of the row onto k2 buckets, j -> j mod k2);
 * - adds x, x^2, x^3, x^4 into lanes of float32 row sums;
 * then per row writes the row's variance (float64, rowVar), adds the power sums into
 * sums[0..3] (float64), and adds the fold, its sign flipped by the row's mask, into row
 * (rowStart + row) mod k1 of the float64 k1 x k2 sketch. cols and k2 are multiples of 4, k2 <= cols.
 * Pointers are byte offsets; signs and rowSigns are uint32 masks (0 or 0x80000000).
 */

export type SketchKernelMode = 'bf16' | 'f32' | 'f32_bf16' | 'f16' | 'f16_bf16';

export const SKETCH_KERNEL_MODES: readonly SketchKernelMode[] = ['bf16', 'f32', 'f32_bf16', 'f16', 'f16_bf16'];

/** Bytes one stored value takes in each mode. */
export const SKETCH_MODE_BYTES: Readonly<Record<SketchKernelMode, number>> = { bf16: 2, f32: 4, f32_bf16: 4, f16: 2, f16_bf16: 2 };

/** f32 bits rounded to the nearest bf16 (ties to even) on the upper 16 bits; NaN and infinity keep an all-ones exponent. */
function roundToBf16(bits: string): string {
  return `(v128.and
      (i32x4.add (i32x4.add ${bits} (i32x4.splat (i32.const 0x7fff)))
        (v128.and (i32x4.shr_u ${bits} (i32.const 16)) (i32x4.splat (i32.const 1))))
      (i32x4.splat (i32.const 0xffff0000)))`;
}

/**
 * f16 (in $h, zero-extended) to f32 bits: magnitude bits moved to f32's places and scaled by
 * 2^112, which is exact for normal and subnormal values alike; an all-ones exponent (NaN,
 * infinity) becomes infinity, so the sums turn non-finite as for the other modes; the sign last.
 */
const F16_TO_F32 = `(v128.or
      (v128.bitselect
        (i32x4.splat (i32.const 0x7f800000))
        (f32x4.mul (i32x4.shl (v128.and (local.get $h) (i32x4.splat (i32.const 0x7fff))) (i32.const 13)) (f32x4.splat (f32.const 0x1p112)))
        (i32x4.eq (v128.and (local.get $h) (i32x4.splat (i32.const 0x7c00))) (i32x4.splat (i32.const 0x7c00))))
      (i32x4.shl (v128.and (local.get $h) (i32x4.splat (i32.const 0x8000))) (i32.const 16)))`;

function loadBits(mode: SketchKernelMode): string {
  switch (mode) {
    case 'bf16': return '(i32x4.shl (v128.load16x4_u (local.get $p)) (i32.const 16))';
    case 'f32': return '(v128.load (local.get $p))';
    case 'f32_bf16': return `(block (result v128) (local.set $b (v128.load (local.get $p))) ${roundToBf16('(local.get $b)')})`;
    case 'f16': return `(block (result v128) (local.set $h (v128.load16x4_u (local.get $p))) ${F16_TO_F32})`;
    case 'f16_bf16': return `(block (result v128) (local.set $h (v128.load16x4_u (local.get $p))) (local.set $b ${F16_TO_F32}) ${roundToBf16('(local.get $b)')})`;
  }
}

/** Horizontal sum of an f32x4 in float64. */
function laneSum(v: string): string {
  return `(f64.add
      (f64.add (f64.promote_f32 (f32x4.extract_lane 0 ${v})) (f64.promote_f32 (f32x4.extract_lane 1 ${v})))
      (f64.add (f64.promote_f32 (f32x4.extract_lane 2 ${v})) (f64.promote_f32 (f32x4.extract_lane 3 ${v}))))`;
}

function addSum(index: number, v: string): string {
  const at = `(i32.add (local.get $sums) (i32.const ${8 * index}))`;
  return `(f64.store ${at} (f64.add (f64.load ${at}) ${laneSum(v)}))`;
}

function kernel(mode: SketchKernelMode): string {
  const step = 4 * SKETCH_MODE_BYTES[mode];
  return `(func (export "sketch_rows_${mode}")
  (param $in i32) (param $rows i32) (param $cols i32) (param $k2 i32) (param $signs i32) (param $fold i32)
  (param $colVar i32) (param $rowVar i32) (param $sums i32) (param $rowStart i32) (param $k1 i32)
  (param $rowSigns i32) (param $sketch i32) (param $minNormal f32) (param $ulpScale f32)
  (local $r i32) (local $p i32) (local $j i32) (local $c i32) (local $chunkEnd i32) (local $rowFold i32)
  (local $s i32) (local $bucket i32) (local $at i32) (local $end i32) (local $mask v128)
  (local $bits v128) (local $x v128) (local $x2 v128) (local $u v128) (local $var v128) (local $f v128)
  (local $vr v128) (local $v1 v128) (local $v2 v128) (local $v3 v128) (local $v4 v128)
  (local $minN v128) (local $scale v128) (local $expMask v128) (local $h v128) (local $b v128)
  (local.set $minN (f32x4.splat (local.get $minNormal)))
  (local.set $scale (f32x4.splat (local.get $ulpScale)))
  (local.set $expMask (i32x4.splat (i32.const 0x7f800000)))
  (local.set $p (local.get $in))
  (local.set $bucket (i32.rem_u (local.get $rowStart) (local.get $k1)))
  (local.set $r (i32.const 0))
  (block $rowsDone (loop $eachRow
    (br_if $rowsDone (i32.ge_u (local.get $r) (local.get $rows)))
    (local.set $rowFold (i32.add (local.get $fold) (i32.shl (i32.mul (local.get $r) (local.get $k2)) (i32.const 2))))
    ;; zero the row's fold
    (local.set $at (local.get $rowFold))
    (local.set $end (i32.add (local.get $rowFold) (i32.shl (local.get $k2) (i32.const 2))))
    (block $zeroDone (loop $zero
      (br_if $zeroDone (i32.ge_u (local.get $at) (local.get $end)))
      (v128.store (local.get $at) (v128.const i32x4 0 0 0 0))
      (local.set $at (i32.add (local.get $at) (i32.const 16)))
      (br $zero)))
    (local.set $vr (v128.const i32x4 0 0 0 0))
    (local.set $v1 (v128.const i32x4 0 0 0 0))
    (local.set $v2 (v128.const i32x4 0 0 0 0))
    (local.set $v3 (v128.const i32x4 0 0 0 0))
    (local.set $v4 (v128.const i32x4 0 0 0 0))
    (local.set $s (local.get $signs))
    (local.set $j (i32.const 0))
    (block $chunksDone (loop $eachChunk
      (br_if $chunksDone (i32.ge_u (local.get $j) (local.get $cols)))
      (local.set $chunkEnd (i32.add (local.get $j) (local.get $k2)))
      (if (i32.gt_u (local.get $chunkEnd) (local.get $cols)) (then (local.set $chunkEnd (local.get $cols))))
      (local.set $c (i32.const 0))
      (block $valuesDone (loop $eachValues
        (br_if $valuesDone (i32.ge_u (local.get $j) (local.get $chunkEnd)))
        (local.set $bits ${loadBits(mode)})
        (local.set $u (f32x4.mul (f32x4.max (v128.and (local.get $bits) (local.get $expMask)) (local.get $minN)) (local.get $scale)))
        (local.set $var (f32x4.mul (local.get $u) (local.get $u)))
        (local.set $vr (f32x4.add (local.get $vr) (local.get $var)))
        (local.set $at (i32.add (local.get $colVar) (local.get $c)))
        (v128.store (local.get $at) (f32x4.add (v128.load (local.get $at)) (local.get $var)))
        (local.set $at (i32.add (local.get $rowFold) (local.get $c)))
        (v128.store (local.get $at) (f32x4.add (v128.load (local.get $at)) (v128.xor (local.get $bits) (v128.load (local.get $s)))))
        (local.set $x (local.get $bits))
        (local.set $x2 (f32x4.mul (local.get $x) (local.get $x)))
        (local.set $v1 (f32x4.add (local.get $v1) (local.get $x)))
        (local.set $v2 (f32x4.add (local.get $v2) (local.get $x2)))
        (local.set $v3 (f32x4.add (local.get $v3) (f32x4.mul (local.get $x2) (local.get $x))))
        (local.set $v4 (f32x4.add (local.get $v4) (f32x4.mul (local.get $x2) (local.get $x2))))
        (local.set $p (i32.add (local.get $p) (i32.const ${step})))
        (local.set $s (i32.add (local.get $s) (i32.const 16)))
        (local.set $c (i32.add (local.get $c) (i32.const 16)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $eachValues)))
      (br $eachChunk)))
    (f64.store (i32.add (local.get $rowVar) (i32.shl (local.get $r) (i32.const 3))) ${laneSum('(local.get $vr)')})
    ${addSum(0, '(local.get $v1)')}
    ${addSum(1, '(local.get $v2)')}
    ${addSum(2, '(local.get $v3)')}
    ${addSum(3, '(local.get $v4)')}
    ;; sketch row (rowStart + r) mod k1 += the fold, signed by the row's mask
    (local.set $mask (i32x4.splat (i32.load (i32.add (local.get $rowSigns) (i32.shl (i32.add (local.get $rowStart) (local.get $r)) (i32.const 2))))))
    (local.set $at (i32.add (local.get $sketch) (i32.shl (i32.mul (local.get $bucket) (local.get $k2)) (i32.const 3))))
    (local.set $c (local.get $rowFold))
    (local.set $end (i32.add (local.get $rowFold) (i32.shl (local.get $k2) (i32.const 2))))
    (block $addDone (loop $add
      (br_if $addDone (i32.ge_u (local.get $c) (local.get $end)))
      (local.set $f (v128.xor (v128.load (local.get $c)) (local.get $mask)))
      (v128.store (local.get $at) (f64x2.add (v128.load (local.get $at)) (f64x2.promote_low_f32x4 (local.get $f))))
      (v128.store offset=16 (local.get $at)
        (f64x2.add (v128.load offset=16 (local.get $at))
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $f) (local.get $f)))))
      (local.set $c (i32.add (local.get $c) (i32.const 16)))
      (local.set $at (i32.add (local.get $at) (i32.const 32)))
      (br $add)))
    (local.set $bucket (i32.add (local.get $bucket) (i32.const 1)))
    (if (i32.ge_u (local.get $bucket) (local.get $k1)) (then (local.set $bucket (i32.const 0))))
    (local.set $r (i32.add (local.get $r) (i32.const 1)))
    (br $eachRow)))
)`;
}

export function sketchWat(): string {
  return `(module
(memory (export "memory") 1)
${SKETCH_KERNEL_MODES.map(kernel).join('\n')}
)`;
}
