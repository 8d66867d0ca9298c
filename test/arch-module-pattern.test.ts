import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileModulePattern, PatternSyntaxError } from '../src/arch/module-pattern.js';
import { mapAdapter } from '../src/arch/peft.js';
import { BadInputError } from '../src/io/errors.js';
import { FakeSource } from './arch-fake-source.js';

const NAMES = [
  'model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.xq_proj', 'model.layers.12.mlp.up_proj',
  'model.layers.12.mlp.down_proj', 'model.layers.7.self_attn.k_proj', 'transformer.h.3.attn.c_attn', 'q_proj', 'lm_head',
];
const KEYS = [
  'q_proj', 'layers\\.0\\.self_attn\\.q_proj', 'model.layers.0.self_attn.q_proj', '.*\\.(q|v)_proj',
  'layers\\.[0-9]+\\.mlp\\.(gate|up)_proj', 'layers\\.\\d{1,2}\\.self_attn\\.k_proj', 'layers\\.\\d{3}\\..*',
  '[^.]+_proj', '(?:h|layers)\\.\\d+\\.(?P<m>attn|mlp)\\..*', 'lm_head|q_proj', 'x?q_pro+j', 'c_att[a-n]', '\\w+_\\w+', '^q_proj$',
];

test('module patterns: PEFT\'s (.*\\.)?(key)$ match, the same as a regular expression engine on ordinary keys', () => {
  for (const key of KEYS) {
    const pattern = compileModulePattern(key);
    const reference = new RegExp(`^(?:.*\\.)?(?:${key.replace(/\(\?P</g, '(?<')})$`);
    for (const name of NAMES) assert.equal(pattern.matches(name), reference.test(name), `${key} on ${name}`);
  }
});

test('module patterns: keys that make a backtracking engine take exponential time are matched in linear time', () => {
  const name = 'model.layers.' + 'a'.repeat(5000) + '.q_proj';
  const started = process.hrtime.bigint();
  for (const key of ['(.*)*!', '(a+)+b', '(a|a)*c', '((a*)*)*x', '(.*a){20}z']) assert.equal(compileModulePattern(key).matches(name), false, key);
  assert.ok(Number(process.hrtime.bigint() - started) / 1e9 < 2, 'five hostile keys on a 5000-character name took over 2 s');
});

test('module patterns: syntax that needs backtracking or is not a regular expression is refused with the reason', () => {
  for (const [key, reason] of [
    ['(?=q)q_proj', /lookaround/], ['(q)\\1', /backreference/], ['(q_proj', /missing \)/], ['q_proj)', /unbalanced/],
    ['*q', /nothing to repeat/], ['q{3,2}', /reversed/], ['[q', /missing \]/], ['q{5000}', /above 1000/], ['(((){999}){999}){999}', /too large/],
  ] as const) {
    assert.throws(() => compileModulePattern(key), (err: unknown) => err instanceof PatternSyntaxError && reason.test(err.message), key);
  }
});

test('an adapter whose rank_pattern key needs backtracking is bad input naming the key; a hostile key finishes at once', () => {
  const tensors = {
    'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': [4, 16],
    'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight': [16, 4],
  };
  const refused = new FakeSource(tensors, { peft_type: 'LORA', r: 4, lora_alpha: 8, rank_pattern: { '(q)\\1': 4 } });
  assert.throws(() => mapAdapter(refused), (err: unknown) => err instanceof BadInputError && /rank_pattern key "\(q\)\\\\1"/.test(err.message));
  const hostile = new FakeSource(tensors, { peft_type: 'LORA', r: 4, lora_alpha: 8, alpha_pattern: { '(.*)*!': 2, 'q_proj': 16 } });
  assert.deepEqual(mapAdapter(hostile).factors.map((f) => f.alpha), [16]);
});
