import { ProblemSchema as Problem } from '@platform/http-common';
import Type, { type Static, type TSchema, type TSchemaOptions } from 'typebox';

export { Problem };

/** AWS reserves tag keys that begin with `aws:`, in any case, and refuses them on every service. */
export const NOT_AWS_RESERVED = '(?![aA][wW][sS]:)';
/** No control characters, and no half of a surrogate pair (no UTF-8 for it, so no AWS API takes it). */
const PRINTABLE = '[^\\p{Cc}\\p{Cs}]';

/**
 * A repository tag: ECR documents only the lengths; what no AWS service takes (a reserved key,
 * control characters, broken UTF-16) is refused here, naming the tag, before anything is written.
 */
export const Tag = Type.Object(
  {
    Key: Type.String({
      minLength: 1,
      maxLength: 128,
      pattern: `^${NOT_AWS_RESERVED}${PRINTABLE}+$`,
      description: 'tag key, 1-128 characters, no control characters, not beginning with aws:',
    }),
    Value: Type.String({
      maxLength: 256,
      pattern: `^${PRINTABLE}*$`,
      description: 'tag value, at most 256 characters, no control characters',
    }),
  },
  { additionalProperties: false },
);
export type Tag = Static<typeof Tag>;

/** ECR allows 50 tags on a repository; the service sets three of them itself. */
export const MAX_TAGS = 50;

/**
 * Error answers of routes that reach AWS (503: the service shutting down while AWS had not
 * answered; 504: no answer from AWS within the request's deadline).
 */
export const awsErrors = { 400: Problem, 403: Problem, 404: Problem, 409: Problem, 429: Problem, 502: Problem, 503: Problem, 504: Problem };

/**
 * Clients of the original decode nothing themselves: Go clients marshal its request structs, which
 * have no `omitempty`, so every field they did not set arrives as `null` (lists) or `""` (strings).
 * Such a field means "not set", as it did in the original. `orNull` and `orBlank` widen an optional
 * body field's schema to accept them; `given` (once, in the route) turns them into absent fields.
 */
export const orNull = <T extends TSchema>(schema: T, options?: TSchemaOptions) =>
  Type.Union([schema, Type.Null()], { description: `${describe(schema)}; null: not set`, ...options });

/** A string field that may also be `""` or `null`: not set. */
export const orBlank = <T extends TSchema>(schema: T, options?: TSchemaOptions) =>
  Type.Union([schema, Type.Literal(''), Type.Null()], { description: `${describe(schema)}; "" or null: not set`, ...options });

const describe = (schema: TSchema) => (schema as { description?: string }).description ?? 'the value';

/** A body with its "not set" fields (`null`, or `""` where orBlank allows it) left out. */
export type Given<T> = { [K in keyof T]: Exclude<T[K], null | ''> };

/**
 * The body with its fields of value `null` or `""` removed. Runs after validation, where only the
 * fields that `orNull`/`orBlank` widen can hold those values (a required name is never `""`).
 */
export function given<T extends object>(body: T): Given<T> {
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== null && v !== '')) as Given<T>;
}
