import { describe, expect, it } from 'vitest';
import { jsonShapeProblem, MAX_DEPTH, MAX_VALUES } from '../../src/admission/json-shape.js';

describe('jsonShapeProblem', () => {
  it('takes nesting up to the bound, and names what is past it', () => {
    const nested = (n: number) => '['.repeat(n) + ']'.repeat(n);
    expect(jsonShapeProblem(nested(MAX_DEPTH))).toBeUndefined();
    expect(jsonShapeProblem(nested(MAX_DEPTH + 1))).toBe(`nests deeper than ${MAX_DEPTH} levels`);
    // Depth is what is open at once, not how many there are.
    expect(
      jsonShapeProblem(
        `[${Array(1000)
          .fill(nested(MAX_DEPTH - 1))
          .join(',')}]`,
      ),
    ).toBeUndefined();
  });

  it('takes values up to the bound, and names what is past it', () => {
    const many = (n: number) =>
      `[${Array(n - 1)
        .fill('1')
        .join(',')}]`; // n - 2 commas and the array
    expect(jsonShapeProblem(many(MAX_VALUES + 1))).toBeUndefined();
    expect(jsonShapeProblem(many(MAX_VALUES + 2))).toBe(`holds more than ${MAX_VALUES} values`);
    expect(jsonShapeProblem(`[${Array(MAX_VALUES).fill('{}').join(',')}]`)).toBe(`holds more than ${MAX_VALUES} values`);
  });

  it('does not count what is inside strings, escaped quotes included', () => {
    const brackets = `"${'[{,'.repeat(MAX_VALUES)}"`;
    expect(jsonShapeProblem(`{"a":${brackets},"b":"\\"[[[[","c":[]}`)).toBeUndefined();
    expect(jsonShapeProblem(`["\\\\", ${'['.repeat(MAX_DEPTH)}${']'.repeat(MAX_DEPTH)}]`)).toBe(`nests deeper than ${MAX_DEPTH} levels`);
  });
});
