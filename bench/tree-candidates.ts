/**
 * The tree's candidate search (src/tree/candidates.ts) on simulated signatures: families of
 * models whose neuron rows descend from a root's (each fine-tune moves every row by 10-30% of its
 * size, and a tenth of the models also permute their neurons), the rest unrelated.
 *
 *   npm run bench:tree-candidates -- [--models 10000,100000] [--seed 1]
 *
 * Per size: time and memory of the codes and of the candidate pairs, the true parent-child pairs
 * whose two models end in different families (edges lost against all pairs: must be 0), and the
 * candidate pairs between unrelated models (the relatedness tests the search costs beyond the
 * families' own). Memory is the process's peak RSS, so run one size per process for a clean
 * number (the sizes run in increasing order).
 */
import { Rng } from '../src/linalg/rng.js';
import { candidatePairs, neuronCodes } from '../src/tree/candidates.js';
import { singleLinkage } from '../src/tree/cluster.js';

const NEURONS = 64, DIM = 128;

interface Simulated {
  readonly codes: Uint32Array[];
  readonly family: Int32Array;
  readonly parent: Int32Array;
}

function simulate(models: number, rng: Rng): Simulated {
  const codes: Uint32Array[] = [];
  const family = new Int32Array(models), parent = new Int32Array(models).fill(-1);
  let f = 0;
  while (codes.length < models) {
    const size = Math.min(models - codes.length, 1 + rng.int(40));
    const rows: Float32Array[] = [];
    const first = codes.length;
    for (let m = 0; m < size; m++) {
      let data: Float32Array;
      if (m === 0) data = Float32Array.from({ length: NEURONS * DIM }, () => rng.gaussian());
      else {
        const p = rng.int(m);
        parent[first + m] = first + p;
        const step = 0.1 + 0.2 * rng.uniform();
        data = Float32Array.from(rows[p]!, (x) => x + step * rng.gaussian());
        if (rng.uniform() < 0.1) {
          const order = rng.permutation(NEURONS);
          const permuted = new Float32Array(data.length);
          for (let n = 0; n < NEURONS; n++) permuted.set(data.subarray(order[n]! * DIM, (order[n]! + 1) * DIM), n * DIM);
          data = permuted;
        }
      }
      rows.push(data);
      family[first + m] = f;
      codes.push(neuronCodes([{ layer: 0, count: NEURONS, dim: DIM, gate: data, up: data }]));
    }
    f++;
  }
  return { codes, family, parent };
}

function run(models: number, seed: number): void {
  const rng = new Rng(seed);
  const started = performance.now();
  const sim = simulate(models, rng);
  const codesSeconds = (performance.now() - started) / 1000;
  const searchStarted = performance.now();
  const pairs = candidatePairs(sim.codes);
  const searchSeconds = (performance.now() - searchStarted) / 1000;
  // Families from the candidate pairs, each confirmed as the relatedness test would: related models only.
  const unrelatedPairs = pairs.filter(([i, j]) => sim.family[i] !== sim.family[j]).length;
  const familyOf = new Int32Array(models);
  singleLinkage(models, (i, j) => sim.family[i] === sim.family[j], undefined, pairs).forEach((members, f) => {
    for (const m of members) familyOf[m] = f;
  });
  let trueEdges = 0, lost = 0;
  for (let m = 0; m < models; m++) {
    if (sim.parent[m]! < 0) continue;
    trueEdges++;
    if (familyOf[m] !== familyOf[sim.parent[m]!]) lost++;
  }
  console.log(`${models} models in ${new Set(sim.family).size} families: codes ${codesSeconds.toFixed(1)} s, candidate pairs ${searchSeconds.toFixed(2)} s `
    + `(${pairs.length} pairs, ${(pairs.length / models).toFixed(1)} a model); true edges ${trueEdges}, lost ${lost}; `
    + `candidate pairs between unrelated models ${unrelatedPairs}; peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
}

const args = process.argv.slice(2);
const at = (flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
for (const models of (at('--models') ?? '10000,100000').split(',').map(Number)) run(models, Number(at('--seed') ?? 1));
