import { describe, expect, it } from 'vitest';
import { Memo } from '../src/memo.js';

describe('Memo', () => {
  it('remembers up to max entries, then forgets them all before taking the next', () => {
    const memo = new Memo<string, number>(3);
    for (const [i, key] of ['a', 'b', 'c'].entries()) memo.set(key, i);
    expect([memo.get('a'), memo.get('b'), memo.get('c'), memo.size]).toEqual([0, 1, 2, 3]);
    memo.set('c', 5); // a held key: nothing is forgotten
    expect([memo.get('a'), memo.get('c'), memo.size]).toEqual([0, 5, 3]);
    memo.set('d', 3);
    expect([memo.get('a'), memo.get('c'), memo.get('d'), memo.size]).toEqual([undefined, undefined, 3, 1]);
  });

  it('never holds more than max, however many keys arrive', () => {
    const memo = new Memo<number, number>(100);
    for (let i = 0; i < 10_000; i++) {
      memo.set(i, i);
      expect(memo.size).toBeLessThanOrEqual(100);
    }
    expect(memo.get(9_999)).toBe(9_999);
  });

  it('forgets everything on clear', () => {
    const memo = new Memo<object, boolean>(10);
    const key = {};
    memo.set(key, true);
    memo.clear();
    expect(memo.get(key)).toBeUndefined();
  });
});
