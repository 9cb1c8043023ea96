import { unwatchFile, watchFile as pollFile } from 'node:fs';
import path from 'node:path';

/** How often the file is polled for a change, by default. */
const POLL_MS = 250;

/**
 * Calls `onChange` whenever a file of `files` may have changed, however it was changed:
 * written in place, replaced by a rename (editors, `mv`, atomic writers), deleted or re-created,
 * swapped underneath through a symlinked directory (the `..data` swap of a Kubernetes Secret or
 * ConfigMap volume, a git-sync checkout), its directory replaced, or its permissions changed.
 * Calls are debounced; the callback should re-read the file and decide whether it differs. With
 * `retryMs`, a callback that returns false (it could not read the files) is called again, with
 * `retrying` true, every `retryMs` until it returns otherwise or a change calls it: a read that
 * failed without changing the files (EMFILE while the process was out of descriptors, EIO, an NFS
 * ESTALE) brings no change of their stat, and so no other call.
 *
 * The path itself is polled with Node's fs.watchFile: libuv stats it every POLL_MS, following
 * symlinks, and reports any change of the file it resolves to (device, inode), its size, times,
 * mode or owner, or of the error. chokidar's watch of the directory missed a rename-over by a file
 * of the same size and an older mtime (`cp -p`, `rsync -a`, a restored backup: the token it
 * revoked stayed valid), a symlinked directory swapped, a file symlinked from elsewhere edited in
 * place, and, once the directory was renamed over, every later change, even a delete. A watch
 * with fs.watch also read the whole directory again after every change in it (a core, beside a
 * file written constantly).
 */
export async function watchFile(
  files: string | readonly string[],
  onChange: (retrying: boolean) => boolean | void | Promise<boolean | void>,
  { debounceMs = 50, pollMs = POLL_MS, retryMs }: { debounceMs?: number; pollMs?: number; retryMs?: number } = {},
): Promise<{ close(): Promise<void> }> {
  // Several files share one debounce: a change to both (a certificate and its key) is one call.
  const targets = [...new Set((typeof files === 'string' ? [files] : files).map((f) => path.resolve(f)))];
  let timer: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;
  const call = (retrying: boolean) => {
    clearTimeout(retry);
    void Promise.resolve(onChange(retrying)).then((read) => {
      // Not persistent, as the watch is not: a retry alone does not keep the process running.
      if (read === false && retryMs !== undefined && !closed) retry = setTimeout(call, retryMs, true).unref();
    });
  };
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(call, debounceMs, false);
  };
  // Not persistent: a watch alone does not keep the process running.
  for (const target of targets) pollFile(target, { interval: pollMs, persistent: false }, changed);
  return {
    close() {
      closed = true;
      for (const target of targets) unwatchFile(target, changed);
      clearTimeout(timer);
      clearTimeout(retry);
      return Promise.resolve();
    },
  };
}
