/**
 * Seeded Gaussian projections, a function of (side, dimension, width) only: every model of a
 * given shape is sketched with the very same matrices, so sketches of two models compare
 * entry by entry, and equal weights give bit-equal sketches.
 */
import { Rng } from '../linalg/rng.js';
import { orthonormalize } from '../linalg/qr.js';

export type ProjectionSide = 'left' | 'right' | 'neuron';

const SIDE_SALT: Readonly<Record<ProjectionSide, number>> = { left: 0x1f3a5c79, right: 0x2b4d6e81, neuron: 0x3c5e7f93 };

const memo = new Map<string, Float64Array>();

/** dim x width matrix of N(0, 1) entries, row-major, memoised (callers must not modify it). */
export function gaussianProjection(side: ProjectionSide, dim: number, width: number): Float64Array {
  const key = `${side}:${dim}:${width}`;
  let p = memo.get(key);
  if (!p) {
    // Seed mixes the dimension in, so different shapes get unrelated projections.
    const rng = new Rng((SIDE_SALT[side] ^ Math.imul(dim, 0x9e3779b1) ^ Math.imul(width, 0x85ebca6b)) >>> 0);
    p = new Float64Array(dim * width);
    for (let i = 0; i < p.length; i++) p[i] = rng.gaussian();
    if (memo.size > 64) memo.clear(); // a handful of shapes per model: keep memory bounded anyway
    memo.set(key, p);
  }
  return p;
}

/**
 * The sketch's side projection: a seeded Gaussian dim x width with its columns orthonormalised
 * and scaled by sqrt(dim), so P^T P = dim I exactly. A raw Gaussian's P^T P spreads from
 * (sqrt(dim) - sqrt(width))^2 to (sqrt(dim) + sqrt(width))^2, which colours the rounding noise
 * of the sketch and pushes its top singular values past the white-noise edge when dim is only a
 * few times the width; with orthogonal columns even noise stays white, and E ||P^T D||^2 is still
 * width ||D||^2.
 */
export function sketchProjection(side: 'left' | 'right', dim: number, width: number): Float64Array {
  const key = `orthogonal-${side}:${dim}:${width}`;
  let p = memo.get(key);
  if (!p) {
    p = orthonormalize({ rows: dim, cols: width, data: gaussianProjection(side, dim, width).slice() }).data;
    const scale = Math.sqrt(dim);
    for (let i = 0; i < p.length; i++) p[i]! *= scale;
    memo.set(key, p);
  }
  return p;
}
