import Type, { type Static } from 'typebox';
import { ID_PATTERN, NAME_MAX_LENGTH, NAME_PATTERN, TAG_PATTERN } from '../reference.js';

const MAX_TAGS = 256;

const ImageId = Type.String({
  pattern: ID_PATTERN,
  maxLength: NAME_MAX_LENGTH + 72,
  description: 'a sha256 digest: 64 lowercase hex digits, optionally prefixed by "sha256:" or by "name@" (a repodigest)',
  examples: ['b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c'],
});

const ImageName = Type.String({
  pattern: NAME_PATTERN,
  maxLength: NAME_MAX_LENGTH,
  description: 'an image name such as "quay.io/foo/nginx" (lowercase path components, optional registry domain)',
});

const ImageTag = Type.String({
  pattern: TAG_PATTERN,
  description: 'a tag: letters, digits, "_", "." and "-", at most 128, not starting with "." or "-"',
});

/** An image as answered; the field order is the original service's wire order. */
export const Image = Type.Object(
  {
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
    id: Type.String({ description: 'sha256 digest, 64 lowercase hex digits' }),
    name: Type.String(),
    tags: Type.Array(Type.String()),
  },
  { $id: 'Image' },
);
export type Image = Static<typeof Image>;

export const PutImageBody = Type.Object({
  id: ImageId,
  name: ImageName,
  tags: Type.Optional(
    Type.Union([Type.Array(ImageTag, { maxItems: MAX_TAGS, description: 'replaces the tags; [] clears them' }), Type.Null()], {
      description: 'absent or null leaves the tags of an existing image as they are',
    }),
  ),
});
export type PutImageBody = Static<typeof PutImageBody>;

const SORT_KEYS = ['created_at', 'updated_at', 'name', 'id'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

export const ListImagesQuery = Type.Object({
  name: Type.Optional(ImageName),
  sort: Type.Optional(
    Type.Union(
      SORT_KEYS.map((k) => Type.Literal(k)),
      { default: 'updated_at', description: 'sort key, always descending' },
    ),
  ),
  limit: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 1000, description: 'opt-in page size; the next page is in the Link header (rel="next")' }),
  ),
  cursor: Type.Optional(Type.String({ maxLength: 1024, description: 'where the previous page ended, from its Link header' })),
});
export type ListImagesQuery = Static<typeof ListImagesQuery>;

/** The wildcard route parameter; parsed in the route so errors name it `params.id`. */
/** The id route is a wildcard (a repodigest holds slashes); OpenAPI documents it under the title, `{id}`. */
export const ImageIdParams = Type.Object({
  '*': Type.String({ title: 'id', description: (ImageId as { description?: string }).description }),
});

export { ProblemSchema as Problem } from '@platform/http-common';
