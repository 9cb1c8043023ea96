import Type, { type Static } from 'typebox';

/** An image as answered: the original's field order (Go's, alphabetical); absent fields are left out. */
export const Image = Type.Object(
  {
    ArtifactMediaType: Type.Optional(Type.String()),
    ImageDigest: Type.Optional(Type.String()),
    ImageManifestMediaType: Type.Optional(Type.String()),
    ImagePushedAt: Type.Optional(Type.String()),
    ImageScanFindingsSummary: Type.Optional(
      Type.Object({
        FindingSeverityCounts: Type.Record(Type.String(), Type.Integer()),
        ImageScanCompletedAt: Type.Optional(Type.String()),
        VulnerabilitySourceUpdatedAt: Type.Optional(Type.String()),
      }),
    ),
    ImageScanStatus: Type.Optional(Type.Object({ Description: Type.Optional(Type.String()), Status: Type.Optional(Type.String()) })),
    ImageSizeInBytes: Type.Optional(Type.Integer()),
    // Always sent (empty for an untagged image), yet optional: the serializer writes required
    // properties first, which would break the original's field order.
    ImageTags: Type.Optional(Type.Array(Type.String(), { description: 'empty for an untagged image' })),
    LastRecordedPullTime: Type.Optional(Type.String()),
    RegistryId: Type.Optional(Type.String()),
    RepositoryName: Type.Optional(Type.String()),
  },
  { $id: 'Image' },
);
export type Image = Static<typeof Image>;
