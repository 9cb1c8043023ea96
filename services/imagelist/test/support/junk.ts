import fc from 'fast-check';

/** Any JSON value a broken client might put where a field belongs; objects nest up to `maxDepth`. */
export const junk = (maxDepth: number) =>
  fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.boolean(), fc.array(fc.string(), { maxLength: 3 }), fc.object({ maxDepth }));
