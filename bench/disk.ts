/**
 * What the benches measure speed against: the operating system's page cache emptied, so the next
 * read comes from the disk, and the disk's own speed (large direct reads that bypass the cache).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

/** Empties the page cache (Linux, as root); false where that is not permitted. */
export function tryDropPageCache(): boolean {
  if (spawnSync('sync').status !== 0) return false;
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '1');
    return true;
  } catch {
    return false;
  }
}

/** Empties the page cache or throws: a bench whose numbers mean cold reads cannot go on without it. */
export function dropPageCache(): void {
  if (!tryDropPageCache()) throw new Error('emptying the page cache needs Linux and root (/proc/sys/vm/drop_caches)');
}

/** Seconds to read the files with GNU dd's 16 MiB direct reads (O_DIRECT); null where dd or O_DIRECT is unavailable. */
export function directReadSeconds(files: readonly string[]): number | null {
  const started = performance.now();
  for (const file of files) {
    if (spawnSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=16M', 'iflag=direct'], { stdio: 'ignore' }).status !== 0) return null;
  }
  return (performance.now() - started) / 1000;
}

/** Seconds to read the files once with `cat` through the page cache (empty it first for a cold read). */
export function catSeconds(files: readonly string[]): number {
  const started = performance.now();
  const cat = spawnSync('sh', ['-c', 'cat "$@" > /dev/null', 'sh', ...files]);
  if (cat.status !== 0) throw new Error('cat failed');
  return (performance.now() - started) / 1000;
}
