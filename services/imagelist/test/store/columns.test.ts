import { describe, expect, it } from 'vitest';
import { column, grown } from '../../src/store/columns.js';

describe('columns', () => {
  it('grow in place: the same array, its values kept, the new part zero', () => {
    const digests = column(Uint32Array, 4, 8);
    expect(digests.length).toBe(32);
    digests.set([1, 2, 3], 29);
    const buffer = digests.buffer;
    const more = grown(digests, 8 * 1_000_000);
    expect(more).toBe(digests);
    expect(more.buffer).toBe(buffer);
    expect(more.length).toBe(8_000_000);
    expect([...more.subarray(28, 34)]).toEqual([0, 1, 2, 3, 0, 0]);
    expect(grown(more, 10)).toBe(more); // never shrinks
    expect(more.length).toBe(8_000_000);
  });

  it('a column that is not resizable is copied into one that is', () => {
    const plain = new Float64Array([1.5, 2.5]);
    const more = grown(plain, 5);
    expect(more).not.toBe(plain);
    expect([...more]).toEqual([1.5, 2.5, 0, 0, 0]);
    expect(more.buffer.resizable).toBe(true);
    expect(grown(more, 9)).toBe(more);
  });
});
