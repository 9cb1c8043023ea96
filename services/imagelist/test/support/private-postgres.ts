import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './server-process.js';

const run = promisify(execFile);
const BIN = '/usr/lib/postgresql/15/bin';

/** Why a private PostgreSQL cannot run here, or undefined when it can. */
export function privatePostgresUnavailable(): string | undefined {
  if (!existsSync(path.join(BIN, 'initdb'))) return `no PostgreSQL 15 server binaries in ${BIN}`;
  if (process.getuid?.() === 0 && !existsSync('/usr/sbin/runuser')) return 'running as root without runuser to drop to the postgres user';
  return undefined;
}

/**
 * A PostgreSQL server of a test's own, in a temporary directory on a free port, so the test can
 * crash it, restart it and freeze it without touching the shared server other tests use.
 */
export class PrivatePostgres {
  port = 0;
  private dir = '';

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  async start(): Promise<this> {
    this.dir = mkdtempSync(path.join(tmpdir(), 'imagelist-pg-'));
    if (process.getuid?.() === 0) chownSync(this.dir, 101, 104);
    this.port = await freePort();
    await this.pg('initdb', ['-D', this.dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    await this.up();
    return this;
  }

  private get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  /** Starts (or restarts) the server and waits until it accepts connections. */
  async up(): Promise<void> {
    const options = `-p ${this.port} -c listen_addresses=127.0.0.1 -k ${this.dir} -c fsync=off -c max_connections=50`;
    await this.pg('pg_ctl', ['-D', this.dataDir, '-o', options, '-l', path.join(this.dir, 'log'), '-w', 'start']);
  }

  /** `immediate` is a crash (no shutdown checkpoint, clients cut); `fast` a clean restart's stop. */
  async down(mode: 'immediate' | 'fast' = 'fast'): Promise<void> {
    await this.pg('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', 'stop']);
  }

  async stop(): Promise<void> {
    if (!this.dir) return;
    await this.down('immediate').catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async pg(tool: string, args: string[]): Promise<void> {
    const bin = path.join(BIN, tool);
    if (process.getuid?.() === 0) await run('/usr/sbin/runuser', ['-u', 'postgres', '--', bin, ...args]);
    else await run(bin, args);
  }
}
