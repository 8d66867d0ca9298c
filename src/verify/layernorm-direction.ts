/**
 * Which of two LayerNorm-family models (ViT, BERT, GPT-2, GPT-NeoX) descends from the other when
 * the change between them is dense (a full fine-tune): not claimed, with the reason why.
 *
 * The norm growth g = (|C|^2 - |B|^2) / |C - B|^2 reads 1 for C = B + U with U independent of B,
 * but both other readings reach that band and beyond:
 * - siblings B = A + U1, C = A + U2 with independent updates of norm ratio t = |U2| / |U1| read
 *   g = (t^2 - 1) / (t^2 + 1): any value below 1 (t = 3 reads 0.8; measured 0.97 on a synthetic
 *   LayerNorm pair), so no cut below 1 keeps siblings out;
 * - a child C = s B + U that shrinks its parent's weights (weight decay, or training that shrinks
 *   attention weights) reads g ~ (u - 2 (1 - s)) / u with u = |U|^2 / |B|^2: below 0 as soon as
 *   the shrink outweighs half the update (s = 0.995 with a 5% update reads -3), i.e. the reversed
 *   direction. Trained ViT fine-tunes sit in between (0.25-0.58 parent -> child, 0.56-0.82 for
 *   siblings and cousins).
 * A least-squares shrink fit leaves the residual orthogonal to B in either order (its growth is 1
 * both ways), and neither the kurtosis change nor a multiplicative-versus-additive split of the
 * delta's covariance with B had a consistent sign on trained pairs, so the direction of a dense
 * change is left open there. A LoRA's low-rank change keeps the norm-growth reading (verdict.ts).
 */
export function undirectedFullFineTune(growth: number, evidence: string): string {
  return `shared origin (${evidence}), but which one descends cannot be told from these two models' weights: the change is dense `
    + `(a full fine-tune), and its norm growth ${growth.toFixed(2)} reads alike for a parent and child (one that shrinks weights reads below 0) `
    + `and for siblings or cousins trained unequally long (up to 1)`;
}
