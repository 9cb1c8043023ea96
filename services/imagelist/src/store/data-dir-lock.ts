import { existsSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '@platform/http-common';
import lockfile from 'proper-lockfile';

/**
 * PGlite keeps no lock on its files (its postmaster.pid always says pid -42): two processes on
 * one data directory both ran, each with its own buffers over the same files, and the writes
 * acknowledged by the one stopped first were lost. This lock says a process has them.
 */
const LOCK = 'imagelist.lock';

/**
 * The holder touches the lock every second; one untouched this long is a holder gone (kill -9, a
 * crash, another host or container that stopped) and is taken over. A new process waits that long
 * before it refuses, or takes the lock of one that died. proper-lockfile's default: the lock is
 * touched from the main thread, which a first start's initdb held for up to 5.3 s on a loaded
 * machine; a live holder's lock must not go stale meanwhile.
 */
const STALE_MS = 10_000;

export interface DataDirLock {
  release(): Promise<void>;
}

/**
 * Takes `<dataDir>/imagelist.lock` (proper-lockfile: an atomic mkdir, kept fresh by its mtime), or
 * throws a ConfigError (exit 2) while another process keeps it. Once taken, a lock removed or
 * taken from under this process (its data directory deleted, another process that judged it
 * stale) ends the process at once with why, exit 1: serving on from files unlinked or shared
 * answered every request 500 (or 503) for as long as it ran.
 */
export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const lockfilePath = path.join(dataDir, LOCK);
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(dataDir, {
      lockfilePath,
      realpath: false,
      stale: STALE_MS,
      update: 1000,
      // Past the stale time: a lock left by a process that died is taken on a retry.
      retries: { retries: STALE_MS / 500 + 2, minTimeout: 500, maxTimeout: 500, factor: 1 },
      onCompromised: () => {
        const why = existsSync(path.join(dataDir, 'PG_VERSION'))
          ? `${lockfilePath} was removed or taken while imagelist ran: another process could start on the same files`
          : `the embedded database's files in ${dataDir} were removed while imagelist ran`;
        // Not closed as after other fatal errors: closing PGlite writes a shutdown checkpoint over
        // the WAL of a process that has the files now (its acknowledged writes were lost once it
        // was killed, 600 of 600). Ended as by kill -9, this one loses nothing it acknowledged.
        process.stderr.write(`fatal: ${why}\n`);
        process.exit(1);
      },
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
    throw new ConfigError(
      `the embedded database in ${dataDir} is in use by another process (${lockfilePath} kept fresh for ${STALE_MS / 1000} s); one data directory serves one process (two would overwrite each other's writes): stop the other, or give this one another --data-dir`,
    );
  }
  return { release: () => release().catch(() => {}) };
}
