import { describe, expect, it, vi } from 'vitest';
import { DatabaseClock, monotonicNow } from '../../src/store/database-clock.js';

describe('DatabaseClock', () => {
  it('knows nothing before a sample', () => {
    const clock = new DatabaseClock();
    expect(clock.fresh(0)).toBe(false);
    expect(clock.earliest(1000)).toBeUndefined();
  });

  it("places the server's clock at the middle of the round trip, and its earliest reading half the round trip before", () => {
    const clock = new DatabaseClock();
    // sent at 1,000, answered at 1,010 by a server 5,000 ms ahead: it read 6,005 at the middle
    clock.sample(1000, 6005, 1010);
    expect(clock.earliest(2000, 1010)).toBe(2000 + 5000 - 5);
  });

  it('keeps the tightest sample until drift makes a looser one as good, and allows for drift since', () => {
    const clock = new DatabaseClock();
    clock.sample(1000, 6001, 1002); // error 1 ms
    clock.sample(2000, 7100, 2040); // error 20 ms a second later: the first is still tighter
    expect(clock.earliest(3000, 2040)).toBeCloseTo(3000 + 5000 - 1 - 1.038, 6);
    clock.sample(60_000, 65_020, 60_040); // a minute later the first has drifted by up to 59 ms
    expect(clock.earliest(61_000, 60_040)).toBe(61_000 + 5000 - 20);
  });

  it('takes no sample from a reading that is not a number, or a round trip that ended before it began', () => {
    const clock = new DatabaseClock();
    clock.sample(1000, Number.NaN, 1010);
    clock.sample(1000, 6000, 990);
    expect(clock.earliest(1000)).toBeUndefined();
  });

  it('is fresh for 5 s after a sample, then read again before a write (the embedded database has no heartbeat)', () => {
    const clock = new DatabaseClock();
    expect(clock.fresh(0)).toBe(false);
    clock.sample(1000, 6001, 1002);
    expect(clock.fresh(5000)).toBe(true);
    expect(clock.fresh(1002 + 5000)).toBe(false);
  });

  it('keeps its own time on a monotonic clock: a step of the wall clock moves no deadline', () => {
    const before = monotonicNow();
    const wall = vi.spyOn(Date, 'now').mockReturnValue(Date.now() - 300_000); // stepped back 5 minutes
    try {
      expect(monotonicNow() - before).toBeGreaterThanOrEqual(0);
      expect(monotonicNow() - before).toBeLessThan(1000);
    } finally {
      wall.mockRestore();
    }
  });
});
