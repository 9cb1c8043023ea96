import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * bcrypt comparisons on a worker thread. bcryptjs is pure JavaScript: its async API still computes
 * on the event loop, in slices of up to 100 ms, so every comparison in flight stalls every other
 * request. One worker keeps that CPU off the event loop; comparisons queue on it in order.
 */

// The worker is a CommonJS script given as a string, so it runs the same from src (tests) and dist;
// it loads bcryptjs by absolute path, resolved here.
const BCRYPTJS = createRequire(import.meta.url).resolve('bcryptjs');
// On Linux it lowers its own thread's priority to nice 19 (setpriority on its thread id): under a
// flood of forged tokens it then takes only the CPU that serving requests leaves idle.
const SCRIPT = `
const { parentPort, workerData } = require('node:worker_threads');
const bcrypt = require(workerData.bcryptjs);
try {
  const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
  require('node:os').setPriority(tid, 19);
} catch {}
parentPort.on('message', ({ id, hash }) => {
  let ok = false;
  try { ok = bcrypt.compareSync(workerData.key, hash); } catch { ok = false; }
  parentPort.postMessage({ id, ok });
});
`;

interface Answer {
  id: number;
  ok: boolean;
}

export class BcryptWorker {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (ok: boolean) => void; reject: (err: Error) => void }>();
  private nextId = 0;

  constructor(private readonly key: string) {}

  /** Whether `hash` is a bcrypt hash of the key; rejects when the worker is lost or closed. */
  compare(hash: string): Promise<boolean> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise<boolean>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, hash });
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.settleAll();
    await worker?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(SCRIPT, { eval: true, workerData: { key: this.key, bcryptjs: BCRYPTJS } });
    worker.unref(); // an idle verifier never keeps the process alive
    worker.on('message', ({ id, ok }: Answer) => {
      this.pending.get(id)?.resolve(ok);
      this.pending.delete(id);
    });
    const lost = () => {
      if (this.worker === worker) this.worker = undefined;
      this.settleAll();
    };
    worker.on('error', lost);
    worker.on('exit', lost);
    this.worker = worker;
    return worker;
  }

  /** Fails every comparison in flight (the worker is gone). */
  private settleAll(): void {
    for (const { reject } of this.pending.values()) reject(new Error('the bcrypt worker stopped'));
    this.pending.clear();
  }
}
