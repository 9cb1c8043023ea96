import bcrypt from 'bcryptjs';
import { describe, expect, it, vi } from 'vitest';
import { XAuthTokenVerifier } from '../src/index.js';

describe('XAuthTokenVerifier', () => {
  const key = 'shared-secret-key';

  it('accepts a bcrypt hash of the shared key, in each bcrypt variant', async () => {
    const verifier = new XAuthTokenVerifier(key);
    const hash = bcrypt.hashSync(key, 4);
    expect(await verifier.verify(hash)).toBe(true);
    expect(await verifier.verify(hash.replace(/^\$2b\$/, '$2a$'))).toBe(true);
  });

  it('rejects a hash of another key, the key itself, garbage and nothing', async () => {
    const verifier = new XAuthTokenVerifier(key);
    expect(await verifier.verify(bcrypt.hashSync('other', 4))).toBe(false);
    expect(await verifier.verify(key)).toBe(false);
    expect(await verifier.verify('$2b$04$short')).toBe(false);
    expect(await verifier.verify(undefined)).toBe(false);
  });

  it('refuses hashes whose cost would pin a core, without computing them', async () => {
    const verifier = new XAuthTokenVerifier(key, { maxCost: 10 });
    const costly = bcrypt.hashSync(key, 4).replace(/^\$2b\$04\$/, '$2b$31$');
    const spy = vi.spyOn(bcrypt, 'compare');
    const started = Date.now();
    expect(await verifier.verify(costly)).toBe(false);
    expect(spy).not.toHaveBeenCalled();
    expect(Date.now() - started).toBeLessThan(1000);
    spy.mockRestore();
  });

  it('computes bcrypt once per distinct valid hash', async () => {
    const verifier = new XAuthTokenVerifier(key);
    const hash = bcrypt.hashSync(key, 4);
    const spy = vi.spyOn(bcrypt, 'compare');
    for (let i = 0; i < 5; i++) expect(await verifier.verify(hash)).toBe(true);
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();
  });

  it('needs a shared key', () => {
    expect(() => new XAuthTokenVerifier('')).toThrow();
  });
});
