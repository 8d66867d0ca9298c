/**
 * Candidate relatives without comparing every pair: the families a large set of models splits
 * into, found from compact signatures, so the full pairwise analysis (relatedness test, ranks,
 * Chu-Liu/Edmonds) runs only inside each family.
 *
 * A model's signature is its neurons' codes: each kept neuron row (the relatedness test's first
 * view, sketch.neurons) is cut by fixed seeded hyperplanes into BANDS codes of BITS sign bits.
 * Relatives share neurons (a fine-tune moves a neuron's row by a few percent, so its codes mostly
 * stay; permuting neurons moves none), unrelated models share a code only by chance
 * (2^-BITS a pair of neurons and band). Codes are keyed without the neuron's position, so a
 * permuted copy is found too. Models sharing at least MIN_SHARED codes are candidate pairs; each
 * is confirmed by `related` (the relatedness test), and families are the connected components of
 * the confirmed pairs. Work and memory grow with the number of models times the neurons kept, and
 * with the square of a family's size, never with the square of the set.
 */
import { Rng } from '../linalg/rng.js';
import type { NeuronSketch } from '../sketch/types.js';
import { singleLinkage } from './cluster.js';

/**
 * Sign bits per code: chance collisions of one neuron pair and band are 2^-26, so a code's bucket
 * holds about 0.1 unrelated models at 10^5 models (at 20 bits the chance pairs outgrew a Map).
 */
const BITS = 26;
/** Codes per neuron, each from its own hyperplanes: a neuron whose row moved a little keeps some. */
const BANDS = 4;
/** Neurons per model that enter the signature (evenly spaced among those the sketch kept). */
const SIGNATURE_NEURONS = 64;
/** Shared codes that make a candidate pair (unrelated pairs share about 64 * 64 * 4 * 2^-26 = 2.4e-4). */
const MIN_SHARED = 3;
/** A code held by more models than this says nothing (a degenerate row, e.g. all zeros): skipped. */
const MAX_BUCKET = 4096;

const hyperplaneMemo = new Map<number, Float64Array>();

function hyperplanes(dim: number): Float64Array {
  let planes = hyperplaneMemo.get(dim);
  if (!planes) {
    const rng = new Rng((0x5bd1e995 ^ Math.imul(dim, 0x27d4eb2d)) >>> 0);
    planes = Float64Array.from({ length: BANDS * BITS * dim }, () => rng.gaussian());
    hyperplaneMemo.set(dim, planes);
  }
  return planes;
}

/** The codes of one model: BANDS per signature neuron, each (band << BITS | code). */
export function neuronCodes(neurons: readonly NeuronSketch[]): Uint32Array {
  const first = neurons[0];
  if (!first || first.count === 0) return new Uint32Array(0);
  const take = Math.min(SIGNATURE_NEURONS, first.count);
  const planes = hyperplanes(first.dim);
  const codes = new Uint32Array(take * BANDS);
  for (let t = 0; t < take; t++) {
    const neuron = Math.floor(((t + 0.5) * first.count) / take);
    const row = first.gate.subarray(neuron * first.dim, (neuron + 1) * first.dim);
    for (let band = 0; band < BANDS; band++) {
      let code = 0;
      for (let bit = 0; bit < BITS; bit++) {
        const plane = (band * BITS + bit) * first.dim;
        let dot = 0;
        for (let c = 0; c < first.dim; c++) dot += row[c]! * planes[plane + c]!;
        code = (code << 1) | (dot > 0 ? 1 : 0);
      }
      codes[t * BANDS + band] = ((band << BITS) | code) >>> 0;
    }
  }
  return codes;
}

/**
 * Pairs of models (i < j) that share at least MIN_SHARED codes. One sort of all (code, model)
 * entries groups the models by code; then, model by model, the models it shares a code with are
 * counted in a dense array (touched entries reset after each model), so the work is the number of
 * shared codes, in typed arrays, with no table of pairs.
 */
export function candidatePairs(codes: readonly Uint32Array[]): Array<[number, number]> {
  const n = codes.length;
  const total = codes.reduce((s, c) => s + c.length, 0);
  const modelScale = 2 ** Math.max(1, Math.ceil(Math.log2(n + 1)));
  if (BANDS * 2 ** BITS * modelScale > Number.MAX_SAFE_INTEGER) throw new RangeError('too many models for the candidate search');
  const entries = new Float64Array(total);
  let at = 0;
  codes.forEach((list, model) => {
    for (const code of list) entries[at++] = code * modelScale + model;
  });
  entries.sort();
  // Per sorted entry its model and its code group's end; per model where its entries stand.
  const modelOf = new Int32Array(total), groupEnd = new Int32Array(total), groupStart = new Int32Array(total);
  const firstOf = new Int32Array(n + 1);
  for (let start = 0; start < total;) {
    const code = Math.floor(entries[start]! / modelScale);
    let end = start + 1;
    while (end < total && Math.floor(entries[end]! / modelScale) === code) end++;
    for (let e = start; e < end; e++) {
      modelOf[e] = entries[e]! % modelScale;
      groupStart[e] = start;
      groupEnd[e] = end;
      firstOf[modelOf[e]! + 1]!++;
    }
    start = end;
  }
  for (let m = 0; m < n; m++) firstOf[m + 1]! += firstOf[m]!;
  const positions = new Int32Array(total), fill = firstOf.slice(0, n);
  for (let e = 0; e < total; e++) positions[fill[modelOf[e]!]!++] = e;
  const count = new Int32Array(n), touched = new Int32Array(n);
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) {
    let touchedCount = 0;
    for (let q = firstOf[i]!; q < firstOf[i + 1]!; q++) {
      const e = positions[q]!;
      if (groupEnd[e]! - groupStart[e]! > MAX_BUCKET) continue;
      for (let f = groupStart[e]!; f < groupEnd[e]!; f++) {
        const j = modelOf[f]!;
        if (j <= i) continue;
        if (count[j] === 0) touched[touchedCount++] = j;
        count[j]!++;
      }
    }
    const found: number[] = [];
    for (let t = 0; t < touchedCount; t++) {
      const j = touched[t]!;
      if (count[j]! >= MIN_SHARED) found.push(j);
      count[j] = 0;
    }
    for (const j of found.sort((x, y) => x - y)) pairs.push([i, j]);
  }
  return pairs;
}

/**
 * The families: connected components of the candidate pairs `related` confirms, each a sorted
 * list of model indices (singletons included), in the order of their smallest member.
 */
export function candidateFamilies(neurons: ReadonlyArray<readonly NeuronSketch[]>, related: (i: number, j: number) => boolean): number[][] {
  return singleLinkage(neurons.length, related, undefined, candidatePairs(neurons.map(neuronCodes)));
}
