import { watch, type FSWatcher } from 'chokidar';
import path from 'node:path';

/**
 * Calls `onChange` whenever the file at `file` may have changed, however it was changed:
 * written in place, replaced by a rename (editors, `mv`, atomic writers), deleted or re-created,
 * or swapped underneath through a symlinked directory (the `..data` swap of a Kubernetes
 * Secret or ConfigMap volume). We watch the parent directory rather than the file, because a
 * watch on the file itself follows the old inode and misses renames and symlink swaps.
 * Calls are debounced; the callback should re-read the file and decide whether it differs.
 */
export async function watchFile(file: string, onChange: () => void, debounceMs = 50): Promise<{ close(): Promise<void> }> {
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
