import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { monotonicNow } from '../../src/store/database-clock.js';
import { WriteBatcher } from '../../src/store/write-batcher.js';

const missed = () => Object.assign(new Error('missed'), { code: 'CLIENT_DEADLINE' });

describe('WriteBatcher', () => {
  // A batch carries its earliest writer's deadline to the database, which refuses the whole
  // statement past it: a writer almost out of time refused the writers beside it, which had time.
  it('answers a write with less than a quarter of its deadline left unsent, and batches the rest with their own deadlines', async () => {
    const batches: { items: string[]; leftMs: number }[] = [];
    const batcher = new WriteBatcher(
      async (items: string[], until: number | undefined) => {
        batches.push({ items, leftMs: until! - monotonicNow() });
        await sleep(items.includes('first') ? 350 : 10);
        return items;
      },
      String,
      { maxBatch: 100, maxInFlight: 1, deadline: { ms: 400, missed } },
    );
    const first = batcher.add('first'); // in flight for 350 ms
    await sleep(10);
    const early = batcher.add('early'); // waits behind it: 50 ms of its 400 left when its turn comes
    await sleep(290);
    const late = batcher.add('late'); // 350 ms left then
    expect(await first).toBe('first');
    await expect(early).rejects.toMatchObject({ code: 'CLIENT_DEADLINE' });
    expect(await late).toBe('late');
    expect(batches.map((b) => b.items)).toEqual([['first'], ['late']]);
    expect(batches[1]!.leftMs).toBeGreaterThan(250);
  });

  it('without a deadline, batches whatever waits', async () => {
    const batches: string[][] = [];
    const batcher = new WriteBatcher(
      async (items: string[]) => {
        batches.push(items);
        await sleep(20);
        return items;
      },
      String,
      { maxBatch: 100, maxInFlight: 1 },
    );
    const a = batcher.add('a');
    await sleep(5); // 'a' is in flight; 'b' and 'c' wait for it however long
    await Promise.all([a, batcher.add('b'), batcher.add('c')]);
    expect(batches).toEqual([['a'], ['b', 'c']]);
  });
});
