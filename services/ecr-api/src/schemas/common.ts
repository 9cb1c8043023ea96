import Type, { type Static } from 'typebox';

/** The JSON error body of every failure (application/problem+json, RFC 9457). */
export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    errors: Type.Optional(Type.Array(Type.Object({ field: Type.String(), message: Type.String() }))),
  },
  { $id: 'Problem', description: 'An error (application/problem+json)' },
);

export const Tag = Type.Object(
  {
    Key: Type.String({ minLength: 1, maxLength: 128, description: 'tag key, 1-128 characters' }),
    Value: Type.String({ maxLength: 256, description: 'tag value, at most 256 characters' }),
  },
  { additionalProperties: false },
);
export type Tag = Static<typeof Tag>;

/** ECR allows 50 tags on a repository; the service sets three of them itself. */
export const MAX_TAGS = 50;

/** Error answers of routes that reach AWS. */
export const awsErrors = { 400: Problem, 403: Problem, 404: Problem, 409: Problem, 429: Problem, 502: Problem };
