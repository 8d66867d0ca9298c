/**
 * Row matching: which row of B plays each row of A (neurons, heads, residual dimensions), by the
 * linear assignment of their correlations when few, beyond DENSE_LIMIT through hashed candidate pairs.
 */
import { linearAssignment } from '../linalg/assignment.js';
import type { Matrix } from '../linalg/matrix.js';
import { matmulTransB, selectRows, spanDot, subMatrix } from '../linalg/ops.js';
import { Rng } from '../linalg/rng.js';

/** Dot products of every row of A with every row of B, rows already of unit length (float32: half the memory). */
function unitRowProducts(a: Matrix, b: Matrix, absolute: boolean): Float32Array {
  const out = new Float32Array(a.rows * b.rows);
  const block = 256;
  for (let r0 = 0; r0 < a.rows; r0 += block) {
    const r1 = Math.min(a.rows, r0 + block);
    const part = matmulTransB(subMatrix(a, r0, r1, 0, a.cols), b).data;
    for (let i = 0; i < part.length; i++) out[r0 * b.rows + i] = absolute ? Math.abs(part[i]!) : part[i]!;
  }
  return out;
}

export interface RowMatch {
  /** permutation[i] = row of B matched to row i of A. */
  readonly permutation: Int32Array;
  /** Mean matched correlation. */
  readonly quality: number;
  /** Matched correlation of each row of A. */
  readonly matched: Float64Array;
}

/** The matching from a ready n x n correlation (or similarity) matrix. */
export function matchFromCorrelations(similarity: Float32Array | Float64Array, n: number): RowMatch {
  const { rowToCol } = linearAssignment(similarity, n, { maximize: true });
  const matched = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    matched[i] = similarity[i * n + rowToCol[i]!]!;
    sum += matched[i]!;
  }
  return { permutation: rowToCol, quality: n > 0 ? sum / n : 1, matched };
}

/** Number of positions a permutation moves. */
export function movedCount(permutation: ArrayLike<number>): number {
  let moved = 0;
  for (let i = 0; i < permutation.length; i++) if (permutation[i] !== i) moved++;
  return moved;
}

/**
 * One kind of evidence for matching rows: unit-length (standardized, possibly sketched) rows of
 * both sides, so a dot product is a correlation; `absolute` when a row may have been negated.
 */
export interface SimilaritySource {
  readonly base: Matrix;
  readonly candidate: Matrix;
  readonly absolute: boolean;
}

export interface SketchMatchOptions {
  /**
   * Up to this many rows, the exact assignment over all n^2 similarities; beyond it, candidate
   * pairs from locality-sensitive hashing (see matchSources). Default DENSE_LIMIT.
   */
  readonly denseLimit?: number;
  /** Seed of the random completion of rows left unmatched beyond denseLimit. */
  readonly seed: number;
}

/** Rows matched exactly (all pairs, assignment) up to this many: 2048^2 similarities, 16 MiB each. */
export const DENSE_LIMIT = 2048;

/**
 * Maximum-similarity one-to-one matching of base rows to candidate rows, the similarity of a pair
 * being the mean over the sources of its correlations.
 *
 * Up to denseLimit rows: the exact assignment. Beyond, all n^2 pairs cost too much (11008 MLP
 * neurons at 7B), and a related pair stands out far above the rest, so: candidate pairs are the
 * rows whose sketches share a random-hyperplane hash (SimHash: sign bits of disjoint groups of
 * coordinates, one table per group), scored exactly; pairs above the largest similarity chance
 * gives among those scored are taken greedily by decreasing similarity; rounds of shorter keys
 * then look among the rows still unmatched. The rows left over are matched exactly among
 * themselves when they are few enough. When they are not (unrelated models: nothing stands out),
 * they are completed by a seeded random permutation: callers give each source its own seed, so
 * two matchings of unrelated models stay independent, as the independence test assumes.
 */
export function matchSources(sources: readonly SimilaritySource[], options: SketchMatchOptions): RowMatch {
  const n = sources[0]!.base.rows;
  for (const s of sources) {
    if (s.base.rows !== n || s.candidate.rows !== n || s.base.cols !== s.candidate.cols) {
      throw new RangeError(`matchSources: ${s.base.rows}x${s.base.cols} vs ${s.candidate.rows}x${s.candidate.cols}`);
    }
  }
  const denseLimit = options.denseLimit ?? DENSE_LIMIT;
  if (n <= denseLimit) return matchFromCorrelations(denseSimilarity(sources, null, null), n);

  const permutation = new Int32Array(n).fill(-1);
  const candidateTaken = new Uint8Array(n);
  // A pair taken from the hashed candidates keeps the similarity it was scored at (the same sum, not recomputed).
  const matched = new Float64Array(n);
  let leftBase = Int32Array.from({ length: n }, (_, i) => i), leftCandidate = leftBase.slice();
  // Rounds of shorter keys over the rows still unmatched: each finds pairs correlated too weakly
  // to share the longer keys, at more chance pairs per table. They stop when the rows left fit the
  // exact assignment, when keys would bring together more than PAIRS_PER_ROW chance pairs per row,
  // or when a round matched almost nothing (nothing related is left to find).
  let scored = 0;
  for (let bits = Math.min(30, Math.ceil(Math.log2(n)) + 4); leftBase.length > denseLimit; bits -= ROUND_BITS) {
    if (leftBase.length / 2 ** bits > PAIRS_PER_ROW) break;
    const pairs = candidatePairs(sources, leftBase, leftCandidate, bits, n);
    scored += pairs.base.length;
    const threshold = chanceSimilarity(sources, scored);
    let taken = 0;
    for (const p of decreasingAbove(pairs.score, threshold)) {
      const i = pairs.base[p]!, j = pairs.candidate[p]!;
      if (permutation[i]! >= 0 || candidateTaken[j]) continue;
      permutation[i] = j;
      candidateTaken[j] = 1;
      matched[i] = pairs.score[p]!;
      taken++;
    }
    leftBase = leftBase.filter((i) => permutation[i]! < 0);
    leftCandidate = leftCandidate.filter((j) => !candidateTaken[j]);
    if (taken < (leftBase.length + taken) * LEAST_ROUND_SHARE) break;
  }
  const k = leftBase.length;
  if (k > 0 && k <= denseLimit) {
    const rest = matchFromCorrelations(denseSimilarity(sources, leftBase, leftCandidate), k);
    for (let t = 0; t < k; t++) permutation[leftBase[t]!] = leftCandidate[rest.permutation[t]!]!;
  } else if (k > 0) {
    const shuffle = new Rng(options.seed).permutation(k);
    for (let t = 0; t < k; t++) permutation[leftBase[t]!] = leftCandidate[shuffle[t]!]!;
  }
  for (const i of leftBase) matched[i] = pairSimilarity(sources, i, permutation[i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += matched[i]!;
  return { permutation, quality: sum / n, matched };
}

/** Each hashing round's keys are this many bits shorter than the last one's. */
const ROUND_BITS = 4;

/** Chance pairs per row and table at most that a round's key length may bring. */
const PAIRS_PER_ROW = 4;

/** A round that matches fewer than this share of the rows it started with ends the rounds. */
const LEAST_ROUND_SHARE = 0.01;

/** Mean over sources of the (absolute where asked) dot products, for all pairs of the given rows. */
function denseSimilarity(sources: readonly SimilaritySource[], baseRows: ArrayLike<number> | null, candidateRows: ArrayLike<number> | null): Float32Array {
  let total: Float32Array | null = null;
  for (const s of sources) {
    const a = baseRows ? selectRows(s.base, baseRows) : s.base;
    const b = candidateRows ? selectRows(s.candidate, candidateRows) : s.candidate;
    const part = unitRowProducts(a, b, s.absolute);
    if (!total) total = part;
    else for (let p = 0; p < part.length; p++) total[p]! += part[p]!;
  }
  if (sources.length > 1) for (let p = 0; p < total!.length; p++) total![p]! /= sources.length;
  return total!;
}

/** Signed correlation of base row i with candidate row j in one source. */
export function sourceDot(s: SimilaritySource, i: number, j: number): number {
  const w = s.base.cols;
  return spanDot(s.base.data, i * w, s.candidate.data, j * w, w);
}

function pairSimilarity(sources: readonly SimilaritySource[], i: number, j: number): number {
  let total = 0;
  for (const s of sources) {
    const dot = pairDots(s).dot(s, i, j);
    total += s.absolute ? Math.abs(dot) : dot;
  }
  return total / sources.length;
}

/**
 * Signed dot products of the pairs a source's rows were scored at, kept with the two matrices
 * (as their sign bits are): verify matches gate alone, up alone, then both, and the last meets
 * nearly every pair the first two scored. An open-addressing table of (i, j) -> dot, holding up
 * to MAX_KEPT_PER_ROW entries per row (beyond, dots are computed and not kept): the pairs
 * repeated are the related ones and the first round's chance pairs, about two per row.
 */
class PairDots {
  private rowsOf: Int32Array;
  private colsOf: Int32Array;
  private dots: Float64Array;
  private kept = 0;

  constructor(private readonly limit: number) {
    const slots = 2 ** Math.ceil(Math.log2(2 * Math.max(limit, 8)));
    this.rowsOf = new Int32Array(slots).fill(-1);
    this.colsOf = new Int32Array(slots);
    this.dots = new Float64Array(slots);
  }

  dot(s: SimilaritySource, i: number, j: number): number {
    const { rowsOf, colsOf } = this, mask = rowsOf.length - 1;
    let slot = (Math.imul(i, 0x9e3779b1) ^ Math.imul(j, 0x85ebca6b)) & mask;
    for (; rowsOf[slot]! >= 0; slot = (slot + 1) & mask) {
      if (rowsOf[slot] === i && colsOf[slot] === j) return this.dots[slot]!;
    }
    const dot = sourceDot(s, i, j);
    if (this.kept < this.limit) {
      rowsOf[slot] = i;
      colsOf[slot] = j;
      this.dots[slot] = dot;
      this.kept++;
    }
    return dot;
  }
}

/** Pairs kept per row of a source's PairDots (the table has twice as many slots, 32 bytes a pair). */
const MAX_KEPT_PER_ROW = 4;

const pairDotsOf = new WeakMap<Matrix, WeakMap<Matrix, PairDots>>();

function pairDots(s: SimilaritySource): PairDots {
  let byCandidate = pairDotsOf.get(s.base);
  if (!byCandidate) pairDotsOf.set(s.base, byCandidate = new WeakMap());
  let dots = byCandidate.get(s.candidate);
  if (!dots) byCandidate.set(s.candidate, dots = new PairDots(MAX_KEPT_PER_ROW * s.base.rows));
  return dots;
}

/**
 * Indices of the scores above the threshold (not at or below: a NaN passes, as it did not stop
 * the greedy walk), by decreasing score, ties by index. Only they are walked, so only they are sorted.
 */
export function decreasingAbove(score: Float64Array, threshold: number): Int32Array {
  let count = 0;
  const above = new Int32Array(score.length);
  for (let p = 0; p < score.length; p++) if (!(score[p]! <= threshold)) above[count++] = p;
  return above.subarray(0, count).sort((x, y) => score[y]! - score[x]! || x - y);
}

/**
 * The largest similarity that chance alone gives among `count` scored pairs: a correlation of
 * unrelated unit rows of width w is about N(0, 1/w), and the maximum of `count` such draws is
 * below sqrt(2 ln count / w) (the Gaussian maximum bound); a mean over sources is no wider.
 */
function chanceSimilarity(sources: readonly SimilaritySource[], count: number): number {
  const width = Math.min(...sources.map((s) => s.base.cols));
  return Math.sqrt((2 * Math.log(Math.max(count, 2))) / width);
}

interface CandidatePairs {
  readonly base: Int32Array;
  readonly candidate: Int32Array;
  readonly score: Float64Array;
}

/**
 * Pairs of the given base and candidate rows that share a SimHash key of `bits` bits in at least
 * one table of one source (one table per group of `bits` sketch coordinates). With log2(n) + 4
 * bits a row meets about 1/16 unrelated rows per table by chance, while a row correlated at rho
 * keeps each bit with probability 1 - acos(rho)/pi in every table.
 */
function candidatePairs(sources: readonly SimilaritySource[], rowsBase: Int32Array, rowsCandidate: Int32Array, bits: number, n: number): CandidatePairs {
  // Packed numbers (key * n + row, i * n + j) stay below 2^53 and sort natively, without a comparator.
  let found: Float64Array = new Float64Array(4 * rowsBase.length);
  let count = 0;
  // The candidate each base row was first paired with: a related pair meets again in most tables,
  // and skipping those repeats here spares the sort most of its work (the rest is deduplicated after).
  const firstCandidate = new Int32Array(n).fill(-1);
  const kbLength = rowsBase.length, kcLength = rowsCandidate.length;
  for (const s of sources) {
    const tables = Math.floor(s.base.cols / bits);
    for (let t = 0; t < tables; t++) {
      const kb = hashTable(s.base, rowsBase, t * bits, bits, s.absolute);
      const kc = hashTable(s.candidate, rowsCandidate, t * bits, bits, s.absolute);
      // Merge the two sorted key lists; every equal-key run of base rows meets the candidate rows of that key.
      for (let p = 0, q = 0; p < kbLength && q < kcLength;) {
        const key = kb.keys[p]!, other = kc.keys[q]!;
        if (key < other) { p++; continue; }
        if (other < key) { q++; continue; }
        let pEnd = p, qEnd = q;
        while (pEnd < kbLength && kb.keys[pEnd] === key) pEnd++;
        while (qEnd < kcLength && kc.keys[qEnd] === key) qEnd++;
        // A crowded key (zero or duplicated rows) tells nothing apart: those rows go to the leftovers.
        if (pEnd - p <= CROWDED_KEY) {
          if (count + (pEnd - p) * (qEnd - q) > found.length) found = grow(found, count + (pEnd - p) * (qEnd - q));
          for (let x = p; x < pEnd; x++) {
            const row = kb.rows[x]!, i = row * n;
            for (let y = q; y < qEnd; y++) {
              const j = kc.rows[y]!;
              if (firstCandidate[row] === j) continue;
              if (firstCandidate[row]! < 0) firstCandidate[row] = j;
              found[count++] = i + j;
            }
          }
        }
        p = pEnd;
        q = qEnd;
      }
    }
  }
  const unique = uniqueSorted(found.subarray(0, count).sort());
  const base = new Int32Array(unique.length), candidate = new Int32Array(unique.length);
  const score = new Float64Array(unique.length);
  for (let p = 0; p < unique.length; p++) {
    base[p] = Math.floor(unique[p]! / n);
    candidate[p] = unique[p]! - base[p]! * n;
    score[p] = pairSimilarity(sources, base[p]!, candidate[p]!);
  }
  return { base, candidate, score };
}

export interface KeyedRows {
  readonly keys: Uint32Array;
  readonly rows: Int32Array;
}

/**
 * Keys (below 2^bits) in increasing order with their rows, ties by row when the rows are given in
 * increasing order (as the hashing rounds keep them): a stable least-significant-digit radix sort,
 * a few passes of at most RADIX_BITS bits, linear where a comparison sort is not.
 */
export function keyedRows(keys: Uint32Array, rows: Int32Array, bits: number): KeyedRows {
  const length = keys.length, passes = Math.max(1, Math.ceil(bits / RADIX_BITS));
  const digitBits = Math.ceil(bits / passes), mask = 2 ** digitBits - 1;
  const starts = new Int32Array(mask + 2);
  let fromKeys = keys, fromRows = rows;
  let toKeys = new Uint32Array(length), toRows = new Int32Array(length);
  // Two fresh buffers per kind, swapped between passes: the caller's arrays are read, never written.
  let spareKeys = new Uint32Array(length), spareRows = new Int32Array(length);
  for (let pass = 0, shift = 0; pass < passes; pass++, shift += digitBits) {
    starts.fill(0);
    for (let p = 0; p < length; p++) starts[((fromKeys[p]! >>> shift) & mask) + 1]!++;
    for (let d = 1; d <= mask + 1; d++) starts[d]! += starts[d - 1]!;
    for (let p = 0; p < length; p++) {
      const at = starts[(fromKeys[p]! >>> shift) & mask]!++;
      toKeys[at] = fromKeys[p]!;
      toRows[at] = fromRows[p]!;
    }
    [fromKeys, fromRows] = [toKeys, toRows];
    [toKeys, toRows, spareKeys, spareRows] = [spareKeys, spareRows, toKeys, toRows];
  }
  return { keys: fromKeys, rows: fromRows };
}

/** Bits of a key sorted per radix pass: 2^11 counters stay in the first-level cache. */
const RADIX_BITS = 11;

function grow(a: Float64Array, least: number): Float64Array {
  const out = new Float64Array(Math.max(least, a.length * 2));
  out.set(a);
  return out;
}

/** The distinct values of a sorted array, in order. */
function uniqueSorted(a: Float64Array): Float64Array {
  let m = 0;
  for (let p = 0; p < a.length; p++) if (p === 0 || a[p] !== a[m - 1]) a[m++] = a[p]!;
  return a.subarray(0, m);
}

/** Base rows sharing one key beyond which the key is ignored (chance gives under one). */
const CROWDED_KEY = 32;

/**
 * Sign bits of every row, 32 coordinates a word (bit b of word w: coordinate 32w + b is > 0),
 * computed once per matrix: the hashing rounds and every matching of the same sketches (verify
 * matches gate and up alone, then together) read their keys from them. Keyed on the matrix
 * object: sketches handed to matchSources are not modified afterwards.
 */
const signBitsOf = new WeakMap<Matrix, Uint32Array>();

function signBits(m: Matrix): Uint32Array {
  let words = signBitsOf.get(m);
  if (words) return words;
  const perRow = Math.ceil(m.cols / 32);
  words = new Uint32Array(m.rows * perRow);
  for (let i = 0; i < m.rows; i++) {
    const o = i * m.cols;
    for (let w = 0; w < perRow; w++) {
      let word = 0;
      const end = Math.min(32, m.cols - 32 * w);
      for (let b = 0; b < end; b++) word |= +(m.data[o + 32 * w + b]! > 0) << b;
      words[i * perRow + w] = word >>> 0;
    }
  }
  signBitsOf.set(m, words);
  return words;
}

/** Sign bits of coordinates [from, from + bits) of the given rows; for absolute sources the key of x and -x agree. */
function hashKeys(m: Matrix, rows: Int32Array, from: number, bits: number, absolute: boolean): Uint32Array {
  const words = signBits(m), perRow = Math.ceil(m.cols / 32);
  const keys = new Uint32Array(rows.length);
  const mask = bits >= 32 ? 0xffffffff : (1 << bits) - 1;
  const word = from >>> 5, shift = from & 31, spills = shift + bits > 32;
  for (let p = 0; p < rows.length; p++) {
    const o = rows[p]! * perRow + word;
    let key = words[o]! >>> shift;
    if (spills) key |= words[o + 1]! << (32 - shift);
    key = (key & mask) >>> 0;
    // Negating a row flips every bit: the smaller of the key and its complement is canonical.
    if (absolute) key = Math.min(key, (~key & mask) >>> 0);
    keys[p] = key;
  }
  return keys;
}

/**
 * keyedRows of hashKeys; the tables over all rows of a matrix (every first round) are kept with
 * it, for the other matchings of the same sketches.
 */
const fullTablesOf = new WeakMap<Matrix, Map<string, KeyedRows>>();

function hashTable(m: Matrix, rows: Int32Array, from: number, bits: number, absolute: boolean): KeyedRows {
  // The rows a round hashes are distinct and increasing (the rows left unmatched): all m.rows of them are 0, 1, ...
  const all = rows.length === m.rows;
  const key = `${from}:${bits}:${absolute}`;
  const kept = all ? fullTablesOf.get(m)?.get(key) : undefined;
  if (kept) return kept;
  const table = keyedRows(hashKeys(m, rows, from, bits, absolute), rows, bits);
  if (all) {
    if (!fullTablesOf.has(m)) fullTablesOf.set(m, new Map());
    fullTablesOf.get(m)!.set(key, table);
  }
  return table;
}
