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
