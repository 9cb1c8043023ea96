import { describe, expect, it } from 'vitest';
import { rfc3339 } from '../../src/aws/repositories.js';

describe('rfc3339: times as the original wrote them (Go time.RFC3339Nano)', () => {
  it.each([
    ['2020-12-14T15:34:18.800Z', '2020-12-14T15:34:18.8Z'],
    ['2020-12-14T15:34:18.120Z', '2020-12-14T15:34:18.12Z'],
    ['2020-12-14T15:34:18.123Z', '2020-12-14T15:34:18.123Z'],
    ['2020-12-14T15:34:18.001Z', '2020-12-14T15:34:18.001Z'],
    ['2020-12-14T15:34:18.000Z', '2020-12-14T15:34:18Z'],
    ['2020-12-14T15:34:10.000Z', '2020-12-14T15:34:10Z'],
  ])('writes %s as %s', (iso, go) => {
    expect(rfc3339(new Date(iso))).toBe(go);
  });

  it('writes nothing for no time', () => {
    expect(rfc3339(undefined)).toBeUndefined();
  });
});
