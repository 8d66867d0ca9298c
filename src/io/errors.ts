/**
 * Every failure a user can cause is a LineageError with a documented exit code.
 * The CLI prints `error: <message>` and exits with `exitCode`; it never prints a stack
 * trace for these. Anything else escaping is a bug and exits with EXIT.internal.
 */
export const EXIT = {
  ok: 0,
  /** A bug in model-lineage: please report it. */
  internal: 1,
  /** Bad input: missing, truncated, malformed or malicious files, unsupported dtypes, NaN weights. */
  badInput: 2,
  /** The models cannot be compared: different architectures or shapes. */
  incompatible: 3,
  /** The sketch registry cannot be reached or used (connection, authentication, an embedded registry open elsewhere). */
  registry: 4,
  /** Wrong command-line usage. */
  usage: 64,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

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
    super(where ? `${message} (${where})` : message);
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
