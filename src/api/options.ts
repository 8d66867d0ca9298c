/**
 * What every library call shares: checking the options a caller (or the CLI, with its flags as
 * text) gives, and reporting bytes read. A wrong option is a LineageError with the usage exit code.
 */
import { EXIT, LineageError } from '../io/errors.js';

/** One pass over weights, as the library reports it while it reads them. */
export interface Progress {
  /** `verify`: both models of a verify; `sketch`: every model of a tree; `align`: a verify pass placing an obfuscated tree member. */
  readonly phase: 'verify' | 'sketch' | 'align';
  /** What the pass reads, e.g. "verify p0 -> o1", "sketching 11 models", "aligning o1 onto p0" (names come from folders). */
  readonly label: string;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

export type ProgressListener = (progress: Progress) => void;

/**
 * Start one pass: reports `bytesDone: 0` at once, then after every chunk read. Returns the byte
 * counter to give the sources (a no-op without a listener).
 */
export function startPass(listener: ProgressListener | undefined, phase: Progress['phase'], label: string, bytesTotal: number): (bytes: number) => void {
  if (!listener) return () => {};
  let bytesDone = 0;
  listener({ phase, label, bytesDone, bytesTotal });
  return (bytes) => {
    bytesDone += bytes;
    listener({ phase, label, bytesDone, bytesTotal });
  };
}

function usageError(message: string): LineageError {
  return new LineageError(message, { exitCode: EXIT.usage });
}

/** A whole number within [min, max] (a number, or the digits of a command-line flag), else a usage error naming `name`. */
export function wholeNumberOption(name: string, value: number | string, min: number, max: number): number {
  const n = typeof value === 'string' ? (/^\d+$/.test(value) ? Number(value) : Number.NaN) : value;
  if (!(Number.isInteger(n) && n >= min && n <= max)) throw usageError(`${name} takes a whole number from ${min} to ${max}, got ${value}`);
  return n;
}

/** An integer (a number, or a flag's text), else a usage error naming `name`. */
export function integerOption(name: string, value: number | string): number {
  const n = typeof value === 'string' ? (/^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN) : value;
  if (!Number.isInteger(n)) throw usageError(`${name} must be an integer, got ${value}`);
  return n;
}

/** One of `choices`, else a usage error naming `name`. */
export function choiceOption<T extends string>(name: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) throw usageError(`${name} must be one of ${choices.join(', ')}, got ${value}`);
  return value as T;
}
