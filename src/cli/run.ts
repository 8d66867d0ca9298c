/**
 * The CLI shell shared by every command: program construction, error -> exit code mapping,
 * and JSON / table output. Commands plug in as registrars: `(program) => void`.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { EXIT, LineageError, printable, type ExitCode } from '../io/errors.js';

/** Adds one command (with its options and action) to the program. */
export type CommandRegistrar = (program: Command) => void;

export interface CliStreams {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
}

function packageVersion(): string {
  try {
    // dist/src/cli/run.js -> package.json three folders up.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export function createProgram(registrars: readonly CommandRegistrar[], streams: CliStreams = process): Command {
  const program = new Command('lineage')
    .description('Weight-level model forensics: fine-tuning origin, LoRA rank and model family trees.')
    .version(packageVersion())
    .exitOverride()
    .configureOutput({
      writeOut: (text) => void streams.stdout.write(text),
      writeErr: (text) => void streams.stderr.write(text),
      // A usage error is one line (a suggestion joined to it), arguments quoted in it escaped.
      outputError: (text, write) => write(printable(text.trimEnd().replace(/\n+/g, ' ')) + '\n'),
    });
  for (const register of registrars) register(program);
  return program;
}

/** Exit code and message (null = already printed) for anything a command threw. */
export function describeFailure(err: unknown): { exitCode: ExitCode; message: string | null } {
  if (err instanceof CommanderError) {
    // Commander has printed its own `error: ...` line (or the help / version text).
    return { exitCode: err.exitCode === 0 ? EXIT.ok : EXIT.usage, message: null };
  }
  if (err instanceof LineageError) return { exitCode: err.exitCode, message: `error: ${err.message}` };
  // The message may quote file contents: escaped to one line, followed by the stack frames.
  const text = err instanceof Error
    ? printable(`${err.name}: ${err.message}`) + (err.stack?.match(/\n\s+at [\s\S]*/)?.[0] ?? '')
    : printable(String(err));
  return { exitCode: EXIT.internal, message: `internal error: ${text}\nThis is a bug in model-lineage; please report it.` };
}

/** Parse argv (without node and script), run the command, and return the exit code. */
export async function runCli(argv: readonly string[], registrars: readonly CommandRegistrar[], streams: CliStreams = process): Promise<ExitCode> {
  const program = createProgram(registrars, streams);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    const { exitCode, message } = describeFailure(err);
    if (message !== null) streams.stderr.write(message + '\n');
    return exitCode;
  }
}

/** Print a result: pretty JSON with --json, else the command's table rendering. */
export function writeResult<T>(value: T, json: boolean, renderTable: (value: T) => string, streams: CliStreams = process): void {
  streams.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : renderTable(value));
}
