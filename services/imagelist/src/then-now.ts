/**
 * `next(value)`: at once when the value is at hand, once it resolves when it is a promise.
 *
 * Reads answered from memory (the hot path: lookups and admission reviews) are synchronous all
 * the way to the handler, which Fastify then answers at once: a promise per request would cost
 * an allocation and a trip through the microtask queue. Only database answers are promises.
 */
export function thenNow<T, U>(value: T | Promise<T>, next: (value: T) => U): U | Promise<U> {
  return value instanceof Promise ? value.then(next) : next(value);
}
