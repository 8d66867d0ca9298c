import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from './cli-child-process.js';
import { fuzzHeaders } from './helpers/header-fuzz.js';

test('safetensors header fuzz (seeded, 3 s): every mutation is accepted whole or refused as bad input on one line, fast', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-fuzz-'));
  try {
    const seeds = ['p2-adapter/adapter_model.safetensors', 'p4a/model-00002-of-00002.safetensors'].map((f) => path.join(REPO_ROOT, 'samples', f));
    const counts = fuzzHeaders(seeds, dir, { seed: 15, seconds: 3 });
    assert.deepEqual(counts.failures, []);
    assert.ok(counts.cases >= 200, `only ${counts.cases} cases in 3 s`);
    // The mutations reach past the JSON parse: both outcomes and several distinct refusals occur.
    assert.ok(counts.accepted > 0 && counts.refused > 0, `${counts.accepted} accepted, ${counts.refused} refused`);
    assert.ok(counts.reasons.size >= 8, [...counts.reasons.keys()].join('; '));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
