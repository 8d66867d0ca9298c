/**
 * Progress of a pass over weights on stderr: bytes read, rate and ETA. Shown only when stderr is
 * a terminal, and never with --json or --quiet, so piped and machine-read output stays clean.
 * Feed it from `openTensorSource(path, { onBytes: pass.onBytes })`, or from the library's
 * `onProgress` through progressDisplay.
 */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import type { ProgressListener } from '../api/options.js';
import { printable } from '../io/errors.js';

/** The command-line switches that silence progress. */
export interface ProgressSettings {
  readonly json?: boolean;
  readonly quiet?: boolean;
}

/** The part of a stream progress needs; process.stderr satisfies it. */
export type ProgressStream = NodeJS.WritableStream & { readonly isTTY?: boolean };

export interface WeightPass {
  /** Count bytes just read; safe to pass around unbound. */
  readonly onBytes: (byteCount: number) => void;
  /** Bytes counted so far. */
  readonly bytes: () => number;
  /** Clear the progress line (idempotent). */
  readonly stop: () => void;
}

export function progressEnabled(settings: ProgressSettings, stream: ProgressStream = process.stderr): boolean {
  return !settings.json && !settings.quiet && stream.isTTY === true;
}

/** Adds `-q, --quiet` to a command; its value arrives as `options.quiet`. */
export function addQuietOption(command: Command): Command {
  return command.option('-q, --quiet', 'no progress display on stderr');
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

/** 1536 -> "1.5 KiB"; three significant digits from KiB up. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toPrecision(3)} ${UNITS[unit]}`;
}

/** 65 -> "1m05s", 3725 -> "1h02m", 7 -> "7s"; "?" when not finite. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** "412 MiB / 1.50 GiB  98.1 MiB/s  ETA 11s": the text after the bar. */
export function describeProgress(bytesDone: number, bytesTotal: number, elapsedSeconds: number): string {
  const rate = elapsedSeconds > 0 ? bytesDone / elapsedSeconds : 0;
  const eta = rate > 0 ? (bytesTotal - bytesDone) / rate : Number.NaN;
  const rateText = rate > 0 ? `${formatBytes(rate)}/s` : '-';
  return `${formatBytes(bytesDone)} / ${formatBytes(bytesTotal)}  ${rateText}  ETA ${formatDuration(eta)}`;
}

const SILENT_PASS: WeightPass = { onBytes: () => {}, bytes: () => 0, stop: () => {} };

/**
 * Start the display of one pass over `totalBytes` of weights, labelled e.g. "reading p0".
 * Returns a pass that counts but draws nothing when progress is disabled.
 */
export function startWeightPass(label: string, totalBytes: number, settings: ProgressSettings, stream: ProgressStream = process.stderr): WeightPass {
  if (!progressEnabled(settings, stream)) {
    let counted = 0;
    return { ...SILENT_PASS, onBytes: (n) => void (counted += n), bytes: () => counted };
  }
  const shown = printable(label); // it names models by their folders
  const bar = new cliProgress.SingleBar({
    stream,
    fps: 8,
    barsize: 24,
    hideCursor: true,
    clearOnComplete: true,
    format: (options, params) =>
      `${shown} ${cliProgress.Format.BarFormat(params.progress, options)} ${describeProgress(params.value, params.total, (Date.now() - params.startTime) / 1000)}`,
  });
  const total = Math.max(1, totalBytes);
  let counted = 0;
  let stopped = false;
  bar.start(total, 0);
  return {
    onBytes: (n) => {
      counted += n;
      if (!stopped) bar.update(Math.min(counted, total));
    },
    bytes: () => counted,
    stop: () => {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}

/**
 * The library's progress reports drawn as weight passes: a new pass (a new label, or the count
 * starting again) replaces the one shown. Draws nothing when progress is disabled.
 */
export function progressDisplay(settings: ProgressSettings, stream: ProgressStream = process.stderr): { readonly onProgress: ProgressListener | undefined; readonly stop: () => void } {
  if (!progressEnabled(settings, stream)) return { onProgress: undefined, stop: () => {} };
  let pass: WeightPass | null = null;
  let label = '';
  let shown = 0;
  const onProgress: ProgressListener = (progress) => {
    if (pass === null || progress.label !== label || progress.bytesDone < shown) {
      pass?.stop();
      pass = startWeightPass(progress.label, progress.bytesTotal, settings, stream);
      label = progress.label;
      shown = 0;
    }
    pass.onBytes(progress.bytesDone - shown);
    shown = progress.bytesDone;
  };
  return { onProgress, stop: () => pass?.stop() };
}
