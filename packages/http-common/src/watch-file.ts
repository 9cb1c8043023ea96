import { watch, type FSWatcher } from 'chokidar';
import path from 'node:path';

/** How often the file and the directory's entries are polled for a change, by default. */
const POLL_MS = 250;

/**
 * Calls `onChange` whenever the file at `file` may have changed, however it was changed:
 * written in place, replaced by a rename (editors, `mv`, atomic writers), deleted or re-created,
 * or swapped underneath through a symlinked directory (the `..data` swap of a Kubernetes
 * Secret or ConfigMap volume). We watch the parent directory rather than the file, because a
 * watch on the file itself follows the old inode and misses renames and symlink swaps.
 * Calls are debounced; the callback should re-read the file and decide whether it differs.
 *
 * Polled (a stat of the file and of the directory every POLL_MS), not fs.watch: with fs.watch,
 * chokidar reads the whole directory again after every change in it, and again as soon as that
 * ends if more changed meanwhile. A file written a line per millisecond beside the tokens file
 * kept an idle imagelist at 88% of a core that way (4.42 s of CPU in 5 s; 0.04 s polled).
 */
export async function watchFile(
  file: string,
  onChange: () => void,
  { debounceMs = 50, pollMs = POLL_MS }: { debounceMs?: number; pollMs?: number } = {},
): Promise<{ close(): Promise<void> }> {
  const dir = path.dirname(path.resolve(file));
  const name = path.basename(file);
  let timer: NodeJS.Timeout | undefined;
  const fire = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
  };
  // Only the file itself, or the `..data` symlink a Kubernetes volume swaps, can change what the
  // file reads as; a log file written beside it must not trigger a reload per line.
  const concerns = (changed: string) => {
    const base = path.basename(changed);
    return base === name || base.startsWith('..');
  };
  const watcher: FSWatcher = watch(dir, {
    ignoreInitial: true,
    depth: 0,
    followSymlinks: false,
    atomic: false,
    awaitWriteFinish: false,
    ignored: (entry: string) => entry !== dir && !concerns(entry),
    usePolling: true,
    interval: pollMs,
    binaryInterval: pollMs,
  });
  watcher.on('all', (_event, changed: string) => {
    if (concerns(changed)) fire();
  });
  watcher.on('error', fire);
  // Changes made before the watcher is ready would be lost.
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  return {
    async close() {
      clearTimeout(timer);
      await watcher.close();
    },
  };
}
