import { ProblemSchema as Problem } from '@platform/http-common';
import Type, { type Static } from 'typebox';

export { Problem };

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

/**
 * Error answers of routes that reach AWS (503: the service shutting down while AWS had not
 * answered; 504: no answer from AWS within the request's deadline).
 */
export const awsErrors = { 400: Problem, 403: Problem, 404: Problem, 409: Problem, 429: Problem, 502: Problem, 503: Problem, 504: Problem };
