import { describe, expect, it } from 'vitest';
import { KeyedLock } from '../../src/aws/keyed-lock.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('KeyedLock', () => {
  it('runs the holders of one key one at a time, in arrival order, and those of other keys at once', async () => {
    const lock = new KeyedLock();
    const events: string[] = [];
    const hold = (key: string, name: string, ms: number) =>
      lock.run(key, async () => {
        events.push(`${name} in`);
        await sleep(ms);
        events.push(`${name} out`);
      });
    await Promise.all([hold('a', 'a1', 30), hold('a', 'a2', 10), hold('b', 'b1', 5), hold('a', 'a3', 0)]);
    expect(events).toEqual(['a1 in', 'b1 in', 'b1 out', 'a1 out', 'a2 in', 'a2 out', 'a3 in', 'a3 out']);
    expect(lock.size).toBe(0);
  });

  it('passes the turn of a waiter that gives up on, and still makes a later one wait for the holder', async () => {
    const lock = new KeyedLock();
    const events: string[] = [];
    const first = lock.run('k', async () => {
      await sleep(40);
      events.push('first done');
    });
    const quitter = lock.run(
      'k',
      async () => events.push('quitter ran'),
      () => Promise.reject(new Error('deadline')),
    );
    await expect(quitter).rejects.toThrow('deadline');
    // Arrives after the quitter left: the first still holds the key.
    await lock.run('k', async () => void events.push('last ran'));
    await first;
    expect(events).toEqual(['first done', 'last ran']);
    await sleep(0);
    expect(lock.size).toBe(0);
  });
});
