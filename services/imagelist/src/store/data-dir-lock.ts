import { existsSync, linkSync, readFileSync, readlinkSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '@platform/http-common';

/**
 * PGlite keeps no lock on its files (its postmaster.pid always says pid -42): two processes on
 * one data directory both ran, each with its own buffers over the same files, and the writes
 * acknowledged by the one stopped first were lost. This lock file says which process has them.
 */
const LOCK_FILE = 'imagelist.lock';

/** How often the holder touches the lock, so a process on another host can tell it is alive. */
const HEARTBEAT_MS = 1000;
/** A lock whose holder cannot be asked (another host or container, unreadable) is stale once untouched this long. */
export const UNTOUCHED_MS = 5 * HEARTBEAT_MS;
/** How long after taking a stale lock its content is read again: two starts may take it at once. */
const SETTLE_MS = 200;

interface Holder {
  pid: number;
  hostname: string;
  /** The kernel's start time of the process (Linux), so a reused pid is told apart. */
  started: string | null;
  /** The pid namespace (Linux): a pid means something only within its own. */
  pidns: string | null;
  /** The kernel's boot id (Linux): within one boot, file times and this process's clock agree. */
  boot: string | null;
}

function readOr(read: () => string): string | null {
  try {
    return read().trim();
  } catch {
    return null;
  }
}

/** A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or null. */
function startOf(pid: number): string | null {
  const stat = readOr(() => readFileSync(`/proc/${pid}/stat`, 'utf8'));
  // Counted after the command name, which may hold spaces and parentheses.
  return stat === null ? null : (stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null);
}

function me(): Holder {
  return {
    pid: process.pid,
    hostname: hostname(),
    started: startOf(process.pid),
    pidns: readOr(() => readlinkSync('/proc/self/ns/pid')),
    boot: readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8')),
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readHolder(file: string): Holder | undefined {
  return parseHolder(readFileSync(file, 'utf8'));
}

function parseHolder(text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    if (typeof h.pid === 'number' && typeof h.hostname === 'string') {
      return { pid: h.pid, hostname: h.hostname, started: h.started ?? null, pidns: h.pidns ?? null, boot: h.boot ?? null };
    }
  } catch {
    // not JSON: unreadable
  }
  return undefined;
}

/** 'dead' or 'alive' when this process can tell; undefined when only the heartbeat can. */
function holderState(h: Holder, self: Holder, touchedMs: number): 'dead' | 'alive' | undefined {
  const sameKernel = h.boot !== null ? h.boot === self.boot : self.boot === null && h.hostname === self.hostname;
  if (!sameKernel) return undefined;
  if (h.pidns !== self.pidns) {
    // Another container on this machine (or this one's predecessor, restarted in a new pid
    // namespace): its pid cannot be asked, but its heartbeat is measured by the same clock.
    return Date.now() - touchedMs > UNTOUCHED_MS ? 'dead' : undefined;
  }
  // A pid this process has now, or no process has, is a holder gone.
  if (h.pid === self.pid || !alive(h.pid)) return 'dead';
  const started = startOf(h.pid);
  return h.started !== null && started !== null && started !== h.started ? 'dead' : 'alive';
}

function mtimeOf(file: string): number {
  return statSync(file).mtimeMs;
}

function describe(h: Holder | undefined): string {
  return h ? `process ${h.pid} on host ${h.hostname}` : 'a process that left an unreadable lock';
}

/** Why this process no longer has the data directory to itself, or undefined while it has. */
function lostBy(dataDir: string, file: string, content: string): string | undefined {
  let now: string;
  try {
    now = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
    return existsSync(path.join(dataDir, 'PG_VERSION'))
      ? `${file} was removed while imagelist ran: another process could start on the same files`
      : `the embedded database's files in ${dataDir} were removed while imagelist ran`;
  }
  return now === content ? undefined : `the embedded database in ${dataDir} was taken by ${describe(parseHolder(now))} while imagelist ran`;
}

export interface DataDirLock {
  release(): void;
}

/**
 * Takes `<dataDir>/imagelist.lock` for this process, or throws a ConfigError naming the holder.
 * A lock left by a process that died (kill -9, a crash) is taken over: at once when the holder
 * ran in this pid namespace, or on this machine and untouched for UNTOUCHED_MS; else once it is
 * seen untouched for UNTOUCHED_MS.
 */
export async function lockDataDir(dataDir: string, onWait?: (holder: string) => void): Promise<DataDirLock> {
  const file = path.join(dataDir, LOCK_FILE);
  const mine = me();
  const content = JSON.stringify(mine) + '\n';
  const temp = `${file}.${randomUUID()}`;
  writeFileSync(temp, content);
  try {
    for (;;) {
      try {
        // Atomic, and the lock is never seen half written.
        linkSync(temp, file);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let holder: Holder | undefined;
      let state: 'dead' | 'alive' | undefined;
      try {
        holder = readHolder(file);
        state = holder && holderState(holder, mine, mtimeOf(file));
        if (state === undefined) {
          onWait?.(describe(holder));
          const before = mtimeOf(file);
          await sleep(UNTOUCHED_MS);
          state = mtimeOf(file) === before ? 'dead' : 'alive';
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
        throw err;
      }
      if (state === 'alive') {
        throw new ConfigError(
          `the embedded database in ${dataDir} is in use by ${describe(holder)}; one data directory serves one process (two would overwrite each other's writes): stop the other, or give this one another --data-dir`,
        );
      }
      renameSync(temp, file);
      await sleep(SETTLE_MS);
      if (readFileSync(file, 'utf8') !== content) {
        throw new ConfigError(`the embedded database in ${dataDir} was taken by ${describe(readHolder(file))} as this process started`);
      }
      break;
    }
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // renamed into place
    }
  }
  const heartbeat = setInterval(() => {
    const lost = lostBy(dataDir, file, content);
    if (lost) {
      clearInterval(heartbeat);
      // Uncaught, from a timer: the service closes as after any fatal error, exit 1. Serving on
      // from files unlinked or shared answered every request 500 (or 503) for as long as it ran.
      throw new Error(lost);
    }
    try {
      const now = new Date();
      utimesSync(file, now, now);
    } catch {
      // read-only now: the database's own writes fail and say so
    }
  }, HEARTBEAT_MS).unref();
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    clearInterval(heartbeat);
    process.off('exit', release);
    try {
      if (readFileSync(file, 'utf8') === content) unlinkSync(file);
    } catch {
      // gone already
    }
  };
  process.on('exit', release);
  return { release };
}
