import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseReference } from '../../src/reference.js';
import { ImageIndex, type ImageRecord } from '../../src/store/image-index.js';
import { formatTimestamp } from '../../src/store/image-json.js';

// The in-memory index on its own: no database, no I/O.
const US = Date.UTC(2017, 9, 27, 16, 51, 6) * 1000 + 698_062;
const hex = (n: number) => n.toString(16).padStart(64, '0');
const image = (n: number, name = 'quay.io/foo/app', tags = ['v1'], at = US + n): ImageRecord => ({
  id: hex(n),
  name,
  tags,
  createdUs: at,
  updatedUs: at,
});
const ref = (s: string) => parseReference(s)!;

describe('ImageIndex', () => {
  it('renders an image in the wire format and order of the original service', () => {
    const index = new ImageIndex();
    index.put({
      id: 'b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c',
      name: 'quay.io/foo/nginx',
      tags: ['latest', 'v1.0'],
      createdUs: US,
      updatedUs: US + 1,
    });
    expect(index.get('b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c')?.json).toBe(
      '{"created_at":"2017-10-27T16:51:06.698062Z","updated_at":"2017-10-27T16:51:06.698063Z","id":"b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c","name":"quay.io/foo/nginx","tags":["latest","v1.0"]}',
    );
    expect(formatTimestamp(0)).toBe('1970-01-01T00:00:00.000000Z');
  });

  it('keeps patterned ids apart and survives growth, deletes and reuse of slots', () => {
    const index = new ImageIndex();
    for (let n = 0; n < 20_000; n++) index.put(image(n, `quay.io/foo/app-${n % 7}`));
    expect(index.size).toBe(20_000);
    for (let n = 0; n < 20_000; n += 2) expect(index.remove(hex(n))).toBe(true);
    expect(index.remove(hex(0))).toBe(false);
    for (let n = 20_000; n < 25_000; n++) index.put(image(n));
    expect(index.size).toBe(15_000);
    for (let n = 0; n < 25_000; n++) expect(index.has(hex(n))).toBe(n >= 20_000 || n % 2 === 1);
    expect(index.get(hex(3))?.name).toBe('quay.io/foo/app-3');
    expect(index.has('not hex')).toBe(false);
  });

  it('allows by digest, or by normalised name and tag, and follows tag and name changes', () => {
    const index = new ImageIndex();
    index.put(image(1, 'nginx', ['1.25']));
    expect(index.allows(ref('docker.io/library/nginx:1.25'))).toBe(true);
    expect(index.allows(ref('nginx:1.26'))).toBe(false);
    expect(index.allows(ref(`nginx@sha256:${hex(1)}`))).toBe(true);
    index.put(image(1, 'nginx', ['1.26']));
    expect(index.allows(ref('nginx:1.25'))).toBe(false);
    expect(index.allows(ref('nginx:1.26'))).toBe(true);
    index.put(image(1, 'quay.io/x/y', ['1.26'])); // a new name moves the image between name lists
    expect(index.allows(ref('nginx:1.26'))).toBe(false);
    expect(index.allows(ref('quay.io/x/y:1.26'))).toBe(true);
    index.remove(hex(1));
    expect(index.allows(ref('quay.io/x/y:1.26'))).toBe(false);
    expect(index.namedJson('quay.io/x/y', 'id').toString()).toBe('[]');
  });

  it('allows by tag on a name of thousands of images exactly as on a small one, and follows its changes', () => {
    const index = new ImageIndex();
    const big = 'quay.io/org/monorepo';
    for (let n = 0; n < 3000; n++) index.put(image(n, big, [`build-${n}`, `v${n % 10}`]));
    index.put(image(5000, 'quay.io/org/small', ['build-1']));
    const allows = (s: string) => index.allows(ref(s));
    expect([allows(`${big}:build-2999`), allows(`${big}:v9`), allows(`${big}:build-3000`), allows(`${big}:latest`)]).toEqual([
      true,
      true,
      false,
      false,
    ]);
    // a changed image of the name: its new tags count, its old ones no longer
    index.put(image(2999, big, ['latest']));
    expect([allows(`${big}:build-2999`), allows(`${big}:latest`)]).toEqual([false, true]);
    // an image gone, and one added
    index.remove(hex(2999));
    index.put(image(3000, big, ['build-3000']));
    expect([allows(`${big}:latest`), allows(`${big}:build-3000`)]).toEqual([false, true]);
    // the name's image moved to another name
    index.put(image(3000, 'quay.io/org/small', ['build-3000']));
    expect([allows(`${big}:build-3000`), allows('quay.io/org/small:build-3000')]).toEqual([false, true]);
    // a name with no tags on an image, and a small name, unaffected
    index.put(image(3001, big, []));
    expect([allows(`${big}:v0`), allows('quay.io/org/small:build-1'), allows('quay.io/org/small:v0')]).toEqual([true, true, false]);
  });

  it('answers a large name by tag as a scan of a model would, through random writes between its lookups', () => {
    // A name past 1,000 images looks tags up in a table kept current by each write (stale entries
    // left behind); this drives one through retags, removals, renames, slot and name reuse, and a
    // table that fills up or wears out.
    let seed = 7;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const names = ['quay.io/org/big', 'quay.io/org/other', 'quay.io/org/third'];
    // one tag in four is `shared`: thousands of images carry it, then lose it
    const tagOf = (n: number) => (n % 4 === 0 ? 'shared' : `t${n}`);
    const index = new ImageIndex();
    const model = new Map<number, { name: string; tags: string[] }>();
    const write = (n: number, name: string, tags: string[]) => {
      index.put(image(n, name, tags));
      model.set(n, { name, tags });
    };
    for (let n = 0; n < 1500; n++) write(n, names[0]!, [tagOf(random(3000)), tagOf(random(3000))]);
    const expected = (name: string, tag: string) => [...model.values()].some((i) => i.name === name && i.tags.includes(tag));
    let checked = 0;
    let large = Infinity;
    for (let step = 0; step < 3000; step++) {
      const n = random(2000);
      const op = random(10);
      if (step % 500 === 499) {
        // the whole big name gone, its number and slots taken by a new large name, then it is back
        for (const [id, i] of [...model]) {
          if (i.name !== names[0]) continue;
          index.remove(hex(id));
          model.delete(id);
        }
        names.push(`quay.io/org/new-${step}`);
        for (let k = 0; k < 1200; k++) write(1_000_000 + step * 2000 + k, names.at(-1)!, [tagOf(random(3000))]);
        for (let k = 0; k < 1200; k++) write(2_000_000 + step * 2000 + k, names[0]!, [tagOf(random(3000))]);
      } else if (op < 4) write(n, names[0]!, [tagOf(random(3000))]);
      else if (op < 6) write(n, names[random(names.length)]!, [tagOf(random(3000)), tagOf(random(3000))]);
      else if (op < 8) {
        index.remove(hex(n));
        model.delete(n);
      } else write(n, names[0]!, []);
      for (let q = 0; q < 3; q++) {
        const name = names[random(names.length)]!;
        const tag = tagOf(random(3000));
        expect(index.allows(ref(`${name}:${tag}`)), `${name}:${tag} after step ${step}`).toBe(expected(name, tag));
        checked++;
      }
      large = Math.min(large, index.countOf(names[0]!));
    }
    // the name stayed large enough for its table throughout
    expect(large).toBeGreaterThan(1000);
    expect(checked).toBe(9000);
  });

  it("answers a large name's tags right when its table fills up, and when a shared tag leaves thousands of stale entries", () => {
    const index = new ImageIndex();
    const big = 'quay.io/org/monorepo';
    const allows = (tag: string) => index.allows(ref(`${big}:${tag}`));
    for (let n = 0; n < 1100; n++) index.put(image(n, big, ['shared', `build-${n}`]));
    expect([allows('shared'), allows('build-7'), allows('nope')]).toEqual([true, true, false]);
    // every image loses `shared`: each lookup of it passes every stale entry, and the table is built again
    for (let n = 0; n < 1100; n++) index.put(image(n, big, [`build-${n}`]));
    expect([allows('shared'), allows('shared'), allows('build-7')]).toEqual([false, false, true]);
    index.put(image(555, big, ['shared']));
    expect([allows('shared'), allows('build-555')]).toEqual([true, false]);
    // far more writes than the table has room for: it is dropped and built again, answers unchanged
    for (let round = 0; round < 4; round++) {
      for (let n = 0; n < 1100; n++) index.put(image(n, big, [`r${round}-${n}`]));
      expect([allows(`r${round}-1099`), allows(`r${round - 1}-1099`), allows('shared')]).toEqual([true, false, false]);
    }
  });

  it('answers a name in the order of each sort key, and never a cached answer older than a change', () => {
    const index = new ImageIndex();
    index.put({ ...image(3), createdUs: 1, updatedUs: 9 });
    index.put({ ...image(2), createdUs: 2, updatedUs: 8 });
    index.put({ ...image(1), createdUs: 2, updatedUs: 7 });
    const ids = (sort: 'created_at' | 'updated_at' | 'name' | 'id') =>
      (JSON.parse(index.namedJson('quay.io/foo/app', sort).toString()) as { id: string }[]).map((i) => Number.parseInt(i.id, 16));
    expect(ids('updated_at')).toEqual([3, 2, 1]);
    expect(ids('created_at')).toEqual([2, 1, 3]); // ties broken by id, descending
    expect(ids('id')).toEqual([3, 2, 1]);
    index.put({ ...image(1), createdUs: 2, updatedUs: 10 });
    expect(ids('updated_at')).toEqual([1, 3, 2]);
    expect(Array.from(index.ordered('updated_at'), (slot) => Number.parseInt(index.cursorOf(slot, 'updated_at')![1], 16))).toEqual([
      1, 3, 2,
    ]);
  });

  it('orders the whole index as the database does, by each key, ties broken by id', () => {
    const index = new ImageIndex();
    const records: ImageRecord[] = [];
    for (let n = 0; n < 3000; n++) {
      // ids that differ in their first bytes as well as their last; few distinct times and names, so ties are many
      const id = ((n * 2654435761) >>> 0).toString(16).padStart(8, '0') + hex(n).slice(8);
      const at = US + (n % 7);
      records.push({ id, name: `quay.io/team/app-${n % 5}`, tags: [], createdUs: at + (n % 3), updatedUs: at });
      index.put(records[records.length - 1]!);
    }
    index.remove(records[10]!.id);
    records.splice(10, 1);
    const key = {
      created_at: (r: ImageRecord) => r.createdUs,
      updated_at: (r: ImageRecord) => r.updatedUs,
      name: (r: ImageRecord) => r.name,
    };
    for (const sort of ['created_at', 'updated_at', 'name', 'id'] as const) {
      const expected = [...records]
        .sort((a, b) => {
          const [x, y] = sort === 'id' ? [a.id, b.id] : [key[sort](a), key[sort](b)];
          return x !== y ? (x < y ? 1 : -1) : a.id < b.id ? 1 : -1;
        })
        .map((r) => r.id);
      const ids = () => Array.from(index.ordered(sort), (slot) => index.cursorOf(slot, sort)![1]);
      expect(ids(), sort).toEqual(expected);
      expect(ids(), `${sort}, kept`).toEqual(expected);
    }
  });

  it('a sweep drops what a full reload did not see again, and an aborted one drops nothing', () => {
    const index = new ImageIndex();
    for (let n = 0; n < 10; n++) index.put(image(n));
    index.beginSweep();
    index.put(image(1));
    index.abortSweep();
    expect(index.endSweep()).toBe(0);
    expect(index.size).toBe(10);
    index.beginSweep();
    for (let n = 0; n < 10; n += 3) index.put(image(n));
    for (let n = 10; n < 2000; n++) index.put(image(n)); // growth during the sweep keeps its marks
    expect(index.endSweep()).toBe(6);
    expect(index.size).toBe(1994);
    expect(index.has(hex(3))).toBe(true);
    expect(index.has(hex(4))).toBe(false);
  });

  it("keeps every image's tags through many rewrites (the tag arena compacts)", () => {
    const index = new ImageIndex({ answerCacheBytes: 0 });
    for (let round = 0; round < 20; round++) for (let n = 0; n < 5000; n++) index.put(image(n, 'quay.io/foo/app', [`r${round}`, `n${n}`]));
    for (let n = 0; n < 5000; n += 250) {
      expect(JSON.parse(index.get(hex(n))!.json).tags).toEqual(['r19', `n${n}`]);
      expect(index.allows(ref(`quay.io/foo/app:n${n}`))).toBe(true);
    }
    expect(index.allows(ref('quay.io/foo/app:r18'))).toBe(false);
  });

  it('estimates its memory from what it holds: names once each, tags by their bytes, nothing left of what it removed', () => {
    const index = new ImageIndex();
    const empty = index.memory();
    expect(empty.heap).toBe(0);
    for (let n = 0; n < 1000; n++) index.put(image(n, 'quay.io/foo/app', ['v1']));
    const oneName = index.memory();
    for (let n = 1000; n < 2000; n++) index.put(image(n, `quay.io/foo/app-${n}`, ['v1']));
    const manyNames = index.memory();
    // A name costs the heap once, whatever the number of its images.
    expect(manyNames.heap - oneName.heap).toBeGreaterThan(1000 * (oneName.heap - empty.heap) * 0.9);
    for (let n = 0; n < 1000; n++) index.put(image(n, 'quay.io/foo/app', ['v1', 'x'.repeat(100)]));
    expect(index.memory().outside - manyNames.outside).toBeGreaterThanOrEqual(1000 * 103); // `,"x…x"`
    for (let n = 0; n < 2000; n++) index.remove(hex(n));
    expect(index.memory().heap).toBe(0);
    expect(index.memory().outside).toBe(0);
  });

  // The estimate keeps the index within the process (live-index.ts): it must not fall short of
  // what this Node really spends. Measured in a child with --expose-gc, from the built index.
  it('does not underestimate what its names cost the heap of this Node', () => {
    const built = fileURLToPath(new URL('../../dist/store/image-index.js', import.meta.url));
    const script = `
      const { ImageIndex } = await import(${JSON.stringify(built)});
      const heap = () => { gc(); gc(); return process.memoryUsage().heapUsed; };
      const before = heap();
      const index = new ImageIndex({ answerCacheBytes: 0 });
      for (let n = 0; n < 50000; n++) {
        // Flat strings, as postgres.js hands them over.
        const name = Buffer.from('registry.example.com/team-' + (n % 500) + '/service-' + n).toString();
        index.putRow({ id: n.toString(16).padStart(64, '0'), name, tagsJson: '"v1"', createdUs: 0, updatedUs: 0 });
      }
      const used = heap() - before;
      console.log(JSON.stringify({ used, estimated: index.memory().heap }));`;
    const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
    const { used, estimated } = JSON.parse(out) as { used: number; estimated: number };
    expect(estimated).toBeGreaterThanOrEqual(used * 0.95);
    expect(estimated).toBeLessThan(used * 1.5);
  });
});
