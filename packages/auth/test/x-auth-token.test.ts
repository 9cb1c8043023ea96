import bcrypt from 'bcryptjs';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { XAuthTokenVerifier, type XAuthTokenOptions } from '../src/index.js';

const key = 'shared-secret-key';
const verifiers: XAuthTokenVerifier[] = [];
afterEach(async () => {
  await Promise.all(verifiers.splice(0).map((v) => v.close()));
});
/**
 * A verifier that waits for its comparisons as long as they take, unless a test sets maxWaitMs:
 * the worker runs at nice 19, and on a machine with no idle core a comparison can take longer
 * than the service's 5 s, which only the test of that bound is about.
 */
function verifier(opts?: XAuthTokenOptions): XAuthTokenVerifier {
  const v = new XAuthTokenVerifier(key, { maxWaitMs: 120_000, ...opts });
  verifiers.push(v);
  return v;
}

/** A well-formed bcrypt hash of nothing in particular: what a forger sends, made for free. */
function forged(cost: number): string {
  const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const body = Array.from(randomBytes(53), (b) => alphabet[b % 64]).join('');
  return `$2b$${String(cost).padStart(2, '0')}$${body}`;
}

// Comparisons at nice 19 take seconds on a machine with no idle core.
describe('XAuthTokenVerifier', { timeout: 60_000 }, () => {
  it('accepts a bcrypt hash of the shared key, in each bcrypt variant', async () => {
    const v = verifier();
    const hash = bcrypt.hashSync(key, 4);
    expect(await v.verify(hash)).toBe(true);
    expect(await v.verify(hash.replace(/^\$2b\$/, '$2a$'))).toBe(true);
  });

  it('rejects a hash of another key, the key itself, garbage and nothing', async () => {
    const v = verifier();
    expect(await v.verify(bcrypt.hashSync('other', 4))).toBe(false);
    expect(await v.verify(key)).toBe(false);
    expect(await v.verify('$2b$04$short')).toBe(false);
    expect(await v.verify(undefined)).toBe(false);
  });

  it('refuses hashes above the cost cap (12 by default) without computing them', async () => {
    const v = verifier();
    expect(await v.verify(bcrypt.hashSync(key, 4).replace(/^\$2b\$04\$/, '$2b$31$'))).toBe(false);
    expect(await v.verify(forged(13))).toBe(false);
    expect(v.stats.computed).toBe(0);
    const capped = verifier({ maxCost: 10 });
    expect(await capped.verify(forged(11))).toBe(false);
    expect(capped.stats.computed).toBe(0);
  });

  it('computes bcrypt once per distinct valid hash, also for concurrent requests', async () => {
    const v = verifier();
    const hash = bcrypt.hashSync(key, 4);
    expect(await Promise.all(Array.from({ length: 5 }, () => v.verify(hash)))).toEqual(Array(5).fill(true));
    for (let i = 0; i < 5; i++) expect(await v.verify(hash)).toBe(true);
    expect(v.stats.computed).toBe(1);
  });

  it('remembers failed hashes: a replayed forgery costs no second bcrypt', async () => {
    const v = verifier();
    const fake = forged(4);
    for (let i = 0; i < 5; i++) expect(await v.verify(fake)).toBe(false);
    expect(v.stats.computed).toBe(1);
  });

  it('refuses tokens beyond maxInFlight at once, while a verified hash keeps passing', async () => {
    const v = verifier({ maxInFlight: 2 });
    const good = bcrypt.hashSync(key, 4);
    expect(await v.verify(good)).toBe(true);
    const flood = Array.from({ length: 20 }, () => forged(10));
    const pending = flood.map((t) => v.verify(t));
    // While two forgeries are under way: the other 18 were already refused, the good hash still passes.
    expect(v.stats).toEqual({ computed: 3, refusedBusy: 18, refusedLate: 0 });
    expect(await v.verify(good)).toBe(true);
    expect(await Promise.all(pending)).toEqual(Array(20).fill(false));
    expect(v.stats).toEqual({ computed: 3, refusedBusy: 18, refusedLate: 0 });
  });

  it('refuses a token unverified once its comparison takes longer than maxWaitMs, and remembers the result for the retry', async () => {
    const v = verifier({ maxWaitMs: 1 });
    // Cost 12: about a quarter of a second of bcrypt, far past the 1 ms a request may wait.
    const slow = bcrypt.hashSync(key, 4).replace(/^\$2b\$04\$/, '$2b$12$');
    const valid = await bcrypt.hash(key, 12);
    expect(await v.check(valid)).toBe('unverified');
    expect(v.stats).toMatchObject({ computed: 1, refusedLate: 1 });
    // Retries while it is still under way share the one comparison; once done, it is remembered.
    let found: string;
    while ((found = await v.check(valid)) === 'unverified') await new Promise((r) => setTimeout(r, 20));
    expect(found).toBe('valid');
    expect(await v.check(valid)).toBe('valid');
    expect(v.stats.computed).toBe(1);
    // A slow mismatch is remembered the same way: a wrong key, 403, once known.
    expect(await v.check(slow)).toBe('unverified');
    while ((found = await v.check(slow)) === 'unverified') await new Promise((r) => setTimeout(r, 20));
    expect(found).toBe('invalid');
    expect(v.stats.computed).toBe(2);
  });

  it('tells a token refused unverified (busy) from a verified mismatch', async () => {
    const v = verifier({ maxInFlight: 1 });
    const underWay = v.check(forged(10));
    const fresh = bcrypt.hashSync(key, 4);
    expect(await v.check(fresh)).toBe('unverified');
    expect(await underWay).toBe('invalid');
    expect(await v.check(fresh)).toBe('valid');
    expect(await v.check(bcrypt.hashSync('other', 4))).toBe('invalid');
    expect(await v.check(undefined)).toBe('invalid');
  });

  it('bounds the remembered hashes (LRU)', async () => {
    const v = verifier({ rejectedCacheSize: 2 });
    const [a, b, c] = [forged(4), forged(4), forged(4)];
    for (const t of [a, b, c]) expect(await v.verify(t)).toBe(false);
    expect(v.stats.computed).toBe(3);
    expect(await v.verify(c)).toBe(false); // remembered
    expect(v.stats.computed).toBe(3);
    expect(await v.verify(a)).toBe(false); // evicted: computed again
    expect(v.stats.computed).toBe(4);
  });

  it('answers false, and remembers nothing, when closed under way', async () => {
    const v = verifier();
    const hash = bcrypt.hashSync(key, 10);
    const pending = v.verify(hash);
    await v.close();
    expect(await pending).toBe(false);
    expect(await v.verify(hash)).toBe(true); // a new worker; the hash was not cached as bad
    expect(v.stats.computed).toBe(2);
  });

  it('needs a shared key', () => {
    expect(() => new XAuthTokenVerifier('')).toThrow();
  });
});
