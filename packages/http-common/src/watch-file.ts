import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';

/** How often the file is polled for a change, by default. */
const POLL_MS = 250;

/** What a poll compares: which file the path resolves to, and its size, times and mode; or why it has none. */
const identity = (s: Stats) => `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}:${s.mode}`;

/**
 * Calls `onChange` whenever the file at `file` may have changed, however it was changed:
 * written in place, replaced by a rename (editors, `mv`, atomic writers), deleted or re-created,
 * swapped underneath through a symlinked directory (the `..data` swap of a Kubernetes Secret or
 * ConfigMap volume, a git-sync checkout), its directory replaced, or its permissions changed.
 * Calls are debounced; the callback should re-read the file and decide whether it differs.
 *
 * The path itself is polled: a stat that follows symlinks every POLL_MS, and a change of the
 * inode it resolves to, its size, mtime, ctime or mode, or of the error, counts. chokidar's
 * watch of the directory missed a rename-over by a file of the same size and an older mtime
 * (`cp -p`, `rsync -a`, a restored backup: the token it revoked stayed valid), a symlinked
 * directory swapped, a file symlinked from elsewhere edited in place, and, once the directory
 * was renamed over, every later change, even a delete. A watch with fs.watch also read the whole
 * directory again after every change in it (a core, beside a file written constantly).
 */
export async function watchFile(
  file: string,
  onChange: () => void,
  { debounceMs = 50, pollMs = POLL_MS }: { debounceMs?: number; pollMs?: number } = {},
): Promise<{ close(): Promise<void> }> {
  const target = path.resolve(file);
  const look = () => stat(target).then(identity, (err: NodeJS.ErrnoException) => `error ${err.code ?? err.message}`);
  let timer: NodeJS.Timeout | undefined;
  let poll: NodeJS.Timeout | undefined;
  let closed = false;
  // The first look is the baseline, taken before this returns.
  let seen = await look();
  const next = () => {
    poll = setTimeout(() => {
      void look().then((now) => {
        if (closed) return;
        if (now !== seen) {
          seen = now;
          clearTimeout(timer);
          timer = setTimeout(onChange, debounceMs);
        }
        next();
      });
    }, pollMs);
    poll.unref();
  };
  next();
  return {
    close() {
      closed = true;
      clearTimeout(poll);
      clearTimeout(timer);
      return Promise.resolve();
    },
  };
}
