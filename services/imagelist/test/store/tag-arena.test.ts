import { describe, expect, it } from 'vitest';
import { TagArena } from '../../src/store/tag-arena.js';

const json = (slot: number, version: number) => `"v${version}","build-${slot}"`;

describe('TagArena', () => {
  it('finds a quoted tag anywhere in its own entry, and never across its neighbour or in a cleared one', () => {
    const arena = new TagArena();
    arena.resize(4);
    arena.set(0, '"ab","v1"');
    arena.set(1, '"v10","cd"');
    arena.set(2, '"x"');
    const has = (slot: number, needle: string) => arena.includes(slot, Buffer.from(needle, 'latin1'));
    expect([has(0, '"ab"'), has(0, '"v1"'), has(1, '"v10"'), has(1, '"cd"'), has(2, '"x"')]).toEqual([true, true, true, true, true]);
    // a prefix of a tag, a tag of the neighbour, bytes that run into the neighbour, a needle longer than the entry
    expect([has(0, '"v10"'), has(1, '"v1"'), has(0, '"ab"'.slice(0, 3) + 'c'), has(0, '"v1""v10"'), has(2, '"x","y"')]).toEqual([
      false,
      false,
      false,
      false,
      false,
    ]);
    expect(has(0, '1""v')).toBe(false); // present only across the boundary of entries 0 and 1
    arena.clear(2);
    expect([has(2, '"x"'), has(3, '"x"')]).toEqual([false, false]);
  });

  it('keeps every entry across many blocks, through replacements and compactions', () => {
    const slots = 150_000; // ~3.5 MB of tags: four blocks
    const arena = new TagArena();
    arena.resize(slots);
    const version = new Uint32Array(slots);
    for (let slot = 0; slot < slots; slot++) arena.set(slot, json(slot, 0));
    // Replaced three times over: the old bytes outweigh the live ones, so the live ones are compacted.
    for (let round = 1; round <= 3; round++) {
      for (let slot = round % 2; slot < slots; slot += 2) {
        version[slot] = round;
        arena.set(slot, json(slot, round));
      }
    }
    for (let slot = 0; slot < slots; slot += 3) arena.clear(slot);
    let live = 0;
    for (let slot = 0; slot < slots; slot++) {
      const want = slot % 3 === 0 ? '' : json(slot, version[slot]!);
      expect(arena.get(slot)).toBe(want);
      live += want.length;
    }
    expect(arena.liveBytes).toBe(live);
    expect(arena.includes(1, Buffer.from(`"v${version[1]}"`))).toBe(true);
    expect(arena.includes(1, Buffer.from('"v9"'))).toBe(false);
    expect(arena.includes(0, Buffer.from('"v0"'))).toBe(false);
  });

  it('putting an entry again unchanged, as every reload does, leaves no garbage', () => {
    const arena = new TagArena();
    arena.resize(1000);
    for (let round = 0; round < 3; round++) for (let slot = 0; slot < 1000; slot++) arena.set(slot, json(slot, 1));
    expect(arena.garbageBytes).toBe(0);
    arena.set(7, json(7, 2));
    expect(arena.garbageBytes).toBe(json(7, 1).length);
    expect(arena.get(7)).toBe(json(7, 2));
    arena.set(8, json(8, 1).replace('build', 'built')); // same length, other bytes
    expect(arena.get(8)).toBe(json(8, 1).replace('build', 'built'));
  });

  it('an entry larger than a block gets a block of its own, and the next entry a new one', () => {
    const arena = new TagArena();
    arena.resize(3);
    const big = Array.from({ length: 60_000 }, (_, i) => `"t-${i}"`).join(','); // ~0.5 MB, three times over: past a block
    arena.set(0, '"a"');
    arena.set(1, `${big},${big},${big}`);
    arena.set(2, '"b"');
    expect(arena.get(0)).toBe('"a"');
    expect(arena.get(1)).toBe(`${big},${big},${big}`);
    expect(arena.get(2)).toBe('"b"');
    expect(arena.includes(1, Buffer.from('"t-59999"'))).toBe(true);
  });

  it('grows its columns without losing what they hold, and an empty entry is empty', () => {
    const arena = new TagArena();
    arena.resize(2);
    arena.set(0, '"x"');
    arena.set(1, '');
    arena.resize(10);
    arena.set(9, '"y"');
    expect([arena.get(0), arena.get(1), arena.get(9)]).toEqual(['"x"', '', '"y"']);
    expect(arena.liveBytes).toBe(6);
  });
});
