/**
 * Every failure a user can cause is a LineageError with a documented exit code.
 * The CLI prints `error: <message>` and exits with `exitCode`; it never prints a stack
 * trace for these. Anything else escaping is a bug and exits with EXIT.internal.
 */

/** The CLI's exit codes (the README's table). */
export const EXIT = {
  ok: 0,
  /** A bug in model-lineage: please report it. */
  internal: 1,
  /** Bad input: missing, truncated, malformed or malicious files, unsupported dtypes, NaN weights. */
  badInput: 2,
  /** The models cannot be compared: different architectures or shapes. */
  incompatible: 3,
  /** With --strict: an input that would be skipped (not a model, unreadable, an adapter without its base). */
  strictSkip: 4,
  /** The sketch registry cannot be reached or used (connection, authentication, an embedded registry open elsewhere). */
  registry: 5,
  /** Wrong command-line usage. */
  usage: 64,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Control characters (C0, DEL, C1), line and paragraph separators and bidirectional overrides. */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const SHORT_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * Text from a file (tensor names, dtypes, config values, folder names, parser messages quoting
 * raw bytes) as it may reach a terminal: every control character shown as an escape (`\n`,
 * `\u001b`), so such text can neither break a line, forge one, nor drive the terminal.
 * Idempotent: its output has nothing left to escape.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export class LineageError extends Error {
  readonly exitCode: ExitCode;
  readonly file: string | undefined;
  readonly tensor: string | undefined;
  /** The message without the appended location, to rebuild the error elsewhere (e.g. from a worker). */
  readonly reason: string;
  constructor(message: string, opts: { exitCode?: ExitCode; file?: string; tensor?: string } = {}) {
    const where = [opts.file ? `file ${opts.file}` : '', opts.tensor ? `tensor ${opts.tensor}` : '']
      .filter(Boolean)
      .join(', ');
    // One error is one line, whatever the names and values quoted in it.
    super(printable(where ? `${message} (${where})` : message));
    this.name = 'LineageError';
    this.exitCode = opts.exitCode ?? EXIT.badInput;
    this.file = opts.file;
    this.tensor = opts.tensor;
    this.reason = message;
  }
}

/** Bad input: the file or folder given is not a readable model. */
export class BadInputError extends LineageError {
  constructor(message: string, opts: { file?: string; tensor?: string } = {}) {
    super(message, { ...opts, exitCode: EXIT.badInput });
    this.name = 'BadInputError';
  }
}

/** Two models that cannot be compared (hidden size, layer count, shapes differ). */
export class IncompatibleModelsError extends LineageError {
  constructor(message: string) {
    super(message, { exitCode: EXIT.incompatible });
    this.name = 'IncompatibleModelsError';
  }
}

/** An error as it crosses a thread boundary: enough to rebuild the input errors the CLI maps to exit codes. */
export interface SerializedError {
  readonly badInput: boolean;
  readonly reason: string;
  readonly message: string;
  readonly file?: string | undefined;
  readonly tensor?: string | undefined;
  readonly stack?: string | undefined;
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof LineageError) {
    return { badInput: err instanceof BadInputError, reason: err.reason, message: err.message, file: err.file, tensor: err.tensor };
  }
  const e = err instanceof Error ? err : new Error(String(err));
  return { badInput: false, reason: e.message, message: e.message, stack: e.stack };
}

/** The error again on this side: a BadInputError as such, anything else as a bug of `where`. */
export function deserializeError(e: SerializedError, where: string): Error {
  if (e.badInput) return new BadInputError(e.reason, { ...(e.file ? { file: e.file } : {}), ...(e.tensor ? { tensor: e.tensor } : {}) });
  return Object.assign(new Error(`${where}: ${e.message}`), e.stack ? { stack: e.stack } : {});
}
