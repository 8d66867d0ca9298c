/**
 * Seeded mutation fuzz of the safetensors header reader: sample files with their length prefix
 * and header JSON mutated (bytes and bits flipped, spans inserted, deleted and repeated, numbers
 * and strings swapped for hostile ones, files cut short), each read by readSafetensorsHeader. The
 * reader must accept (and then every tensor lies inside the file, none overlapping) or refuse with
 * a BadInputError on one printable line; anything else thrown, or a slow read, is a failure.
 * Used by test/io-fuzz-headers.test.ts (a few seconds) and bench/fuzz-headers.ts (longer).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadInputError } from '../../src/io/errors.js';
import { readSafetensorsHeader } from '../../src/io/safetensors.js';
import { Rng } from '../../src/linalg/rng.js';

export interface FuzzCounts {
  readonly cases: number;
  readonly accepted: number;
  readonly refused: number;
  /** Refusals by kind (refusalKind), with counts. */
  readonly reasons: ReadonlyMap<string, number>;
  /** Descriptions of failures (at most 20 kept). */
  readonly failures: readonly string[];
  readonly slowestMs: number;
}

/** A read slower than this is a failure: a header of a few KB parses in well under a millisecond. */
const SLOW_MS = 1000;
const HOSTILE_NUMBERS = ['0', '-1', '1.5', '1e308', '-0', '9007199254740993', '18446744073709551616', '4294967296', 'null', '[]', '{}', '"7"'];
const HOSTILE_STRINGS = ['""', '"__proto__"', '"__metadata__"', '"F128"', '"BF16\\u0000"', '"\\u001b[31m\\nerror: forged"', '"data_offsets"', '"shape"', '"\\ud800"'];

export function fuzzHeaders(seedFiles: readonly string[], workDir: string, options: { seed: number; seconds?: number; cases?: number }): FuzzCounts {
  const seeds = seedFiles.map((f) => fs.readFileSync(f));
  const rng = new Rng(options.seed);
  const file = path.join(workDir, 'fuzz.safetensors');
  const deadline = Date.now() + 1000 * (options.seconds ?? Infinity);
  const maxCases = options.cases ?? Infinity;
  let cases = 0, accepted = 0, refused = 0, slowestMs = 0;
  const reasons = new Map<string, number>();
  const failures: string[] = [];
  while (cases < maxCases && Date.now() < deadline) {
    const seed = seeds[cases % seeds.length]!;
    const { head, fileSize } = mutate(seed, rng);
    // The reader never looks at payload bytes: the file is extended to its size with zeros.
    fs.writeFileSync(file, head);
    fs.truncateSync(file, fileSize);
    cases++;
    const started = performance.now();
    try {
      const header = readSafetensorsHeader(file);
      accepted++;
      const problem = invalidAccepted(header.tensors, header.fileSize, header.dataStart);
      if (problem && failures.length < 20) failures.push(`case ${cases}: accepted ${problem}`);
    } catch (err) {
      if (err instanceof BadInputError && !/[\u0000-\u001f\u007f-\u009f]/.test(err.message)) {
        refused++;
        const reason = refusalKind(err.message);
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      } else if (failures.length < 20) {
        failures.push(`case ${cases}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
      }
    }
    const ms = performance.now() - started;
    slowestMs = Math.max(slowestMs, ms);
    if (ms > SLOW_MS && failures.length < 20) failures.push(`case ${cases}: ${ms.toFixed(0)} ms`);
  }
  return { cases, accepted, refused, reasons, failures, slowestMs };
}

/** "malformed safetensors header: bad JSON", "overlapping tensors", "unsupported dtype": the kind, without names or numbers. */
function refusalKind(reason: string): string {
  const parts = reason.replace(/\(.*$/, '').split(':');
  return parts.slice(0, parts[0] === 'malformed safetensors header' ? 2 : 1).join(':').replace(/^unsupported dtype .*/, 'unsupported dtype').replace(/(?<!UTF-)\d+/g, 'N').trim();
}

/** What an accepted header must never hold: a tensor outside the file, overlapping another, or named twice. */
function invalidAccepted(tensors: ReadonlyArray<{ name: string; start: number; byteLength: number }>, fileSize: number, dataStart: number): string | null {
  const names = new Set<string>();
  const spans = [...tensors].sort((a, b) => a.start - b.start);
  let end = dataStart;
  for (const t of spans) {
    if (names.has(t.name)) return `tensor ${JSON.stringify(t.name)} twice`;
    names.add(t.name);
    if (t.start < dataStart || t.start + t.byteLength > fileSize) return `tensor ${JSON.stringify(t.name)} outside the file`;
    if (t.byteLength > 0 && t.start < end) return `tensor ${JSON.stringify(t.name)} overlapping`;
    if (t.byteLength > 0) end = t.start + t.byteLength;
  }
  return tensors.length === 0 ? 'no tensors' : null;
}

/** One to four mutations, aimed at the length prefix and header (the payload is not parsed). */
function mutate(seed: Buffer, rng: Rng): { head: Buffer; fileSize: number } {
  const headerEnd = Math.min(seed.length, 8 + Number(seed.readBigUInt64LE(0)));
  let header: Buffer = Buffer.from(seed.subarray(0, headerEnd));
  let payloadBytes = seed.length - headerEnd;
  const pick = (n: number) => Math.floor(rng.uniform() * n);
  const count = 1 + pick(4);
  let prefixMutated = false;
  for (let m = 0; m < count; m++) {
    const at = pick(header.length);
    switch (pick(9)) {
      case 0: header[at] = pick(256); break;
      case 1: header[at] = header[at]! ^ (1 << pick(8)); break;
      case 2: header = Buffer.concat([header.subarray(0, at), Buffer.from(Array.from({ length: 1 + pick(8) }, () => pick(256))), header.subarray(at)]); break;
      case 3: header = Buffer.concat([header.subarray(0, at), header.subarray(Math.min(header.length, at + 1 + pick(64)))]); break;
      case 4: { // repeat a span: repeated keys, nested objects
        const span = header.subarray(at, Math.min(header.length, at + 1 + pick(200)));
        header = Buffer.concat([header.subarray(0, at), span, span, header.subarray(at + span.length)]);
        break;
      }
      case 5: header = replaceToken(header, /-?\d+(\.\d+)?([eE][+-]?\d+)?/g, HOSTILE_NUMBERS, rng); break;
      case 6: header = replaceToken(header, /"(?:[^"\\]|\\.)*"/g, HOSTILE_STRINGS, rng); break;
      case 7: { // the length prefix: off by a little, or absurd
        const length = seed.readBigUInt64LE(0);
        const choices = [length + 1n, length - 1n, 0n, 2n ** 63n, BigInt(header.length - 8), BigInt(seed.length)];
        header.writeBigUInt64LE(BigInt.asUintN(64, choices[pick(choices.length)]!), 0);
        prefixMutated = true;
        break;
      }
      case 8: payloadBytes = pick(payloadBytes + 1); break; // cut short
    }
  }
  // Mostly keep the prefix true to the mutated JSON, so mutations reach the checks past the parse.
  if (!prefixMutated && header.length >= 8 && pick(10) > 0) header.writeBigUInt64LE(BigInt(header.length - 8), 0);
  return { head: header, fileSize: header.length + payloadBytes };
}

function replaceToken(bytes: Buffer, token: RegExp, choices: readonly string[], rng: Rng): Buffer {
  const text = bytes.subarray(8).toString('latin1');
  const matches = [...text.matchAll(token)];
  if (matches.length === 0) return bytes;
  const m = matches[Math.floor(rng.uniform() * matches.length)]!;
  const replacement = choices[Math.floor(rng.uniform() * choices.length)]!;
  const edited = text.slice(0, m.index) + replacement + text.slice(m.index! + m[0].length);
  return Buffer.concat([bytes.subarray(0, 8), Buffer.from(edited, 'latin1')]);
}
