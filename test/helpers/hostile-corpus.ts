/**
 * Malformed, hostile and degenerate model folders, each built from the shipped `samples/` (p0 and
 * p2-adapter): what a stranger's upload can hold. Every case states the exit code each command
 * must give; the test runs them all as child processes (test/cli-hostile.test.ts).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export type Command = 'inspect' | 'verify' | 'tree';

export interface HostileCase {
  readonly name: string;
  /** The folder (or file) given to the commands. */
  readonly path: string;
  /** Exit code per command: 0 where the input is degenerate but readable (its output is then checked). */
  readonly expect: Readonly<Record<Command, number>>;
}

interface Safetensors {
  /** Header entries in file order (tensor name -> { dtype, shape, data_offsets }), __metadata__ included. */
  readonly header: Array<[string, unknown]>;
  readonly payload: Buffer;
}

export function readSafetensorsParts(file: string): Safetensors {
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  return { header: Object.entries(JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>), payload: bytes.subarray(8 + n) };
}

/** A safetensors file from header JSON text (written as given, even when invalid) and payload. */
export function safetensorsBytes(headerText: string | Buffer, payload: Uint8Array): Buffer {
  const json = typeof headerText === 'string' ? Buffer.from(headerText, 'utf8') : headerText;
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, payload]);
}

interface Entry { dtype: string; shape: number[]; data_offsets: [number, number] }

function entryOf(parts: Safetensors, tensor: string): Entry {
  const found = parts.header.find(([name]) => name === tensor);
  if (!found) throw new Error(`sample has no ${tensor}`);
  return found[1] as Entry;
}

const BF16_NAN = [0xc0, 0x7f];
const BF16_INF = [0x80, 0x7f];

/** Build every case under `root` from the samples in `samples`; returns them in a fixed order. */
export function buildHostileCorpus(samples: string, root: string): HostileCase[] {
  const p0 = path.join(samples, 'p0');
  const adapter = path.join(samples, 'p2-adapter');
  const weights = readSafetensorsParts(path.join(p0, 'model.safetensors'));
  const config = JSON.parse(fs.readFileSync(path.join(p0, 'config.json'), 'utf8')) as Record<string, unknown>;
  const cases: HostileCase[] = [];
  const bad = { inspect: 2, verify: 2, tree: 2 };
  const dataOnly = { inspect: 0, verify: 2, tree: 2 }; // header fine, values bad: inspect reads no values

  /** A p0 folder with the given weights file bytes (or a builder) and config. */
  const model = (name: string, expect: HostileCase['expect'], write: (dir: string) => void): void => {
    const dir = path.join(root, name);
    fs.mkdirSync(dir, { recursive: true });
    write(dir);
    cases.push({ name, path: dir, expect });
  };
  const withWeights = (bytes: Buffer, cfg: Record<string, unknown> | null = config) => (dir: string) => {
    fs.writeFileSync(path.join(dir, 'model.safetensors'), bytes);
    if (cfg) fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  };
  const headerText = (entries: Array<[string, unknown]>) => JSON.stringify(Object.fromEntries(entries));
  const rebuilt = (edit: (entries: Array<[string, unknown]>) => Array<[string, unknown]>, payload: Buffer = weights.payload) =>
    safetensorsBytes(headerText(edit(weights.header.map(([k, v]) => [k, structuredClone(v)]))), payload);
  const poked = (tensor: string, value: number[], at = 0) => {
    const payload = Buffer.from(weights.payload);
    payload.set(value, entryOf(weights, tensor).data_offsets[0] + 2 * at);
    return safetensorsBytes(headerText(weights.header), payload);
  };
  const intact = safetensorsBytes(headerText(weights.header), weights.payload);

  // --- internal errors before: folders and odd shards where a file belongs
  model('weights-is-a-folder', bad, (dir) => {
    fs.mkdirSync(path.join(dir, 'model.safetensors'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  });
  for (const [name, shard] of [['index-shard-dot', '.'], ['index-shard-subfolder', 'sub']] as const) {
    model(name, bad, (dir) => {
      fs.mkdirSync(path.join(dir, 'sub'));
      fs.copyFileSync(path.join(p0, 'model.safetensors'), path.join(dir, 'real.safetensors'));
      const weightMap = Object.fromEntries(weights.header.filter(([k]) => k !== '__metadata__').map(([k]) => [k, shard]));
      fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    });
  }
  // --- hangs before: a named pipe where the weights or the config belong
  if (canMakeFifo(root)) {
    model('weights-is-a-fifo', bad, (dir) => {
      execFileSync('mkfifo', [path.join(dir, 'model.safetensors')]);
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    });
    model('config-is-a-fifo', bad, (dir) => {
      fs.copyFileSync(path.join(p0, 'model.safetensors'), path.join(dir, 'model.safetensors'));
      execFileSync('mkfifo', [path.join(dir, 'config.json')]);
    });
  }
  model('weights-link-to-dev-zero', bad, (dir) => {
    fs.symlinkSync('/dev/zero', path.join(dir, 'model.safetensors'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  });
  // --- strictness
  model('duplicate-tensor-name', bad, withWeights(safetensorsBytes(
    headerText(weights.header).replace(/^\{/, `{"lm_head.weight":${JSON.stringify(entryOf(weights, 'model.embed_tokens.weight'))},`), weights.payload)));
  model('header-without-tensors', bad, withWeights(safetensorsBytes('{"__metadata__":{"format":"pt"}}', Buffer.alloc(0))));
  model('q-proj-3d', bad, withWeights(rebuilt((entries) => {
    const q = entries.find(([k]) => k === 'model.layers.1.self_attn.q_proj.weight')![1] as Entry;
    q.shape = [128, 2, 64];
    return entries;
  })));
  model('heads-do-not-divide-hidden', bad, withWeights(intact, { ...config, num_attention_heads: 3, num_key_value_heads: 3, head_dim: undefined }));
  model('index-omits-lm-head', bad, (dir) => {
    fs.copyFileSync(path.join(p0, 'model.safetensors'), path.join(dir, 'model-00001-of-00001.safetensors'));
    const weightMap = Object.fromEntries(weights.header
      .filter(([k]) => k !== '__metadata__' && k !== 'lm_head.weight').map(([k]) => [k, 'model-00001-of-00001.safetensors']));
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, tie_word_embeddings: undefined }));
  });
  model('nan-in-embeddings', dataOnly, withWeights(poked('model.embed_tokens.weight', BF16_NAN, 77)));
  model('nan-in-final-norm', dataOnly, withWeights(poked('model.norm.weight', BF16_NAN, 5)));
  model('inf-in-q-proj', dataOnly, withWeights(poked('model.layers.2.self_attn.q_proj.weight', BF16_INF, 1000)));
  // --- output a file can forge
  const forged = 'x\nerror: forged line\u001b[2J\u001b]0;title\u0007\u009b31m';
  model('forged-dtype', bad, withWeights(rebuilt((entries) => {
    (entries.find(([k]) => k === 'model.layers.0.self_attn.k_proj.weight')![1] as Entry).dtype = `BF16${forged}`;
    return entries;
  })));
  model('forged-tensor-name-bad-shape', bad, withWeights(rebuilt((entries) => entries.map(([k, v]) => {
    if (k !== 'model.layers.3.mlp.up_proj.weight') return [k, v];
    (v as Entry).shape = [351, 128];
    return [`${k}${forged}`, v];
  }))));
  model('forged-tensor-name-extra', { inspect: 0, verify: 0, tree: 0 }, withWeights(rebuilt((entries) => {
    const end = weights.payload.length;
    return [...entries, [`vision.extra${forged}`, { dtype: 'BF16', shape: [1, 2], data_offsets: [end, end + 4] }]];
  }, Buffer.concat([weights.payload, Buffer.from([0, 0x3f, 0, 0x3f])]))));
  model('forged-config-values', { inspect: 0, verify: 0, tree: 0 }, withWeights(intact, { ...config, architectures: [`Llama${forged}`], model_type: `llama${forged}` }));
  model('forged-config-bad-value', bad, withWeights(intact, { ...config, num_hidden_layers: `4${forged}` }));
  model('nul-in-header-json', bad, withWeights(safetensorsBytes(Buffer.from('{"a\u0000\u001b[31m": 1, ', 'utf8'), Buffer.alloc(0))));
  model(`forged-folder-name${forged.replace(/\//g, '')}`, { inspect: 0, verify: 0, tree: 0 }, withWeights(poked('model.layers.1.mlp.up_proj.weight', [0x00, 0x3f], 3)));
  // --- what already held: truncations, absurd lengths and offsets, overlaps, shapes, dtypes, pickles
  model('truncated-payload', bad, withWeights(safetensorsBytes(headerText(weights.header), weights.payload.subarray(0, 100_000))));
  model('truncated-header', bad, withWeights(intact.subarray(0, 200)));
  model('absurd-header-length', bad, withWeights((() => {
    const b = Buffer.from(intact);
    b.writeBigUInt64LE(2n ** 60n);
    return b;
  })()));
  model('offsets-past-end', bad, withWeights(rebuilt((entries) => {
    (entries.find(([k]) => k === 'model.norm.weight')![1] as Entry).data_offsets = [2 ** 40, 2 ** 40 + 256];
    return entries;
  })));
  model('overlapping-tensors', bad, withWeights(rebuilt((entries) => {
    const e = entries.find(([k]) => k === 'model.layers.0.self_attn.v_proj.weight')![1] as Entry;
    e.data_offsets = [e.data_offsets[0] - 64, e.data_offsets[1] - 64];
    return entries;
  })));
  model('unsupported-dtype', bad, withWeights(rebuilt((entries) => {
    (entries.find(([k]) => k === 'model.norm.weight')![1] as Entry).dtype = 'F128';
    return entries;
  })));
  model('config-contradicts-shapes', bad, withWeights(intact, { ...config, hidden_size: 96 }));
  model('pickle-only', bad, (dir) => {
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), Buffer.from('\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.', 'latin1'));
  });
  model('empty-folder', bad, () => {});
  // --- adapters: hostile or bad adapter_config.json
  const adapterConfig = JSON.parse(fs.readFileSync(path.join(adapter, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  const adapterCase = (name: string, cfg: Record<string, unknown>, expect: HostileCase['expect']) => model(name, expect, (dir) => {
    fs.copyFileSync(path.join(adapter, 'adapter_model.safetensors'), path.join(dir, 'adapter_model.safetensors'));
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(cfg));
  });
  // tree refuses adapters (merge first): exit 2 even for a good one.
  adapterCase('adapter-catastrophic-pattern', { ...adapterConfig, rank_pattern: { '(.*)*!': 4, '(a|aa)*b': 4 }, alpha_pattern: { '((.*)*)*x': 2 } }, { inspect: 0, verify: 0, tree: 2 });
  adapterCase('adapter-backreference-pattern', { ...adapterConfig, rank_pattern: { '(q)\\1_proj': 8 } }, bad);
  adapterCase('adapter-bad-rank', { ...adapterConfig, r: -1 }, bad);
  adapterCase('adapter-forged-fields', { ...adapterConfig, base_model_name_or_path: `p0${forged}`, target_modules: [`q_proj${forged}`, 'v_proj'] }, { inspect: 0, verify: 0, tree: 2 });
  return cases;
}

function canMakeFifo(root: string): boolean {
  try {
    execFileSync('mkfifo', [path.join(root, '.probe-fifo')]);
    fs.rmSync(path.join(root, '.probe-fifo'));
    return true;
  } catch {
    return false;
  }
}
