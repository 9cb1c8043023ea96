import { describe, expect, it } from 'vitest';
import { sortWire, toWire, wireHasTag, wireName, wireSortValue } from '../../src/store/wire-image.js';

const row = {
  created_at: '2017-10-20T15:57:05.948595Z',
  updated_at: '2017-10-25T10:04:56.426671Z',
  id: '89562e2c3c4f29abd7e7a3586908f147ee0abeabbf9c07582daf632872b8ac0a',
  name: 'localhost:5000/v10/app',
  tags: ['v10', 'latest'],
};

describe('wire images', () => {
  const json = toWire(row);

  it('are the wire JSON, in the original field order', () => {
    expect(JSON.parse(json)).toEqual(row);
    expect(Object.keys(JSON.parse(json))).toEqual(['created_at', 'updated_at', 'id', 'name', 'tags']);
  });

  it('read their fields back by position', () => {
    expect(wireName(json)).toBe(row.name);
    expect(wireSortValue(json, 'created_at')).toBe(row.created_at);
    expect(wireSortValue(json, 'updated_at')).toBe(row.updated_at);
    expect(wireSortValue(json, 'id')).toBe(row.id);
    expect(wireSortValue(json, 'name')).toBe(row.name);
  });

  it('find whole tags only, and never in the name', () => {
    expect(wireHasTag(json, 'v10')).toBe(true);
    expect(wireHasTag(json, 'latest')).toBe(true);
    expect(wireHasTag(json, 'v1')).toBe(false);
    expect(wireHasTag(json, 'app')).toBe(false);
    expect(wireHasTag(toWire({ ...row, tags: [] }), 'v10')).toBe(false);
  });

  it('sort descending with the id breaking ties', () => {
    const older = toWire({ ...row, id: 'a'.repeat(64), updated_at: '2017-10-24T10:04:56.426671Z' });
    const tie = toWire({ ...row, id: 'f'.repeat(64) });
    expect(sortWire([older, json, tie], 'updated_at')).toEqual([tie, json, older]);
  });
});
