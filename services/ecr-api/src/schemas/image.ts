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

/** An image tag, as the OCI distribution spec defines it. */
export const ImageTag = Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$', description: 'an image tag' });

const ImageId = Type.Object({ ImageDigest: Type.Optional(Type.String()), ImageTag: Type.Optional(Type.String()) });

const Finding = Type.Object({
  Attributes: Type.Array(Type.Object({ Key: Type.String(), Value: Type.String() })),
  Description: Type.Optional(Type.String()),
  Name: Type.Optional(Type.String()),
  Severity: Type.Optional(Type.String()),
  Uri: Type.Optional(Type.String()),
});

/** An image's scan findings (basic scanning's Findings, enhanced scanning's EnhancedFindings as AWS has them, keys PascalCase). */
export const ScanFindings = Type.Object(
  {
    EnhancedFindings: Type.Optional(Type.Array(Type.Record(Type.String(), Type.Unknown()))),
    FindingSeverityCounts: Type.Record(Type.String(), Type.Integer()),
    Findings: Type.Array(Finding),
    ImageScanCompletedAt: Type.Optional(Type.String()),
    VulnerabilitySourceUpdatedAt: Type.Optional(Type.String()),
  },
  { $id: 'ScanFindings' },
);
export type ScanFindings = Static<typeof ScanFindings>;

const ScanStatus = Type.Object({ Description: Type.Optional(Type.String()), Status: Type.Optional(Type.String()) });

/** GET .../images/{tag}: the original's shape since its #44 (camelCase top-level keys). */
export const ImageWithFindings = Type.Object(
  {
    imageDetail: Image,
    scanFindings: Type.Optional(ScanFindings),
    scanError: Type.Optional(
      Type.String({ description: 'why the findings could not be read (never scanned, ...); the image is still answered' }),
    ),
  },
  { $id: 'ImageWithFindings' },
);
export type ImageWithFindings = Static<typeof ImageWithFindings>;

/** DELETE .../images/{tag}: BatchDeleteImage's answer, PascalCase. */
export const DeletedImageTag = Type.Object(
  {
    Failures: Type.Array(Type.Object({ FailureCode: Type.Optional(Type.String()), FailureReason: Type.Optional(Type.String()), ImageId })),
    ImageIds: Type.Array(ImageId),
  },
  { $id: 'DeletedImageTag' },
);
export type DeletedImageTag = Static<typeof DeletedImageTag>;

/** One repository's latest image and its findings (GET /{account}/scanFindings). */
export const RepositoryFindings = Type.Object({
  ImageId,
  ImageScanFindings: ScanFindings,
  ImageScanStatus: ScanStatus,
  RegistryId: Type.String(),
  RepositoryName: Type.String(),
});
export type RepositoryFindings = Static<typeof RepositoryFindings>;

/** GET /{account}/scanRepositories. */
export const ScanStarted = Type.Object(
  {
    message: Type.String(),
    repositories: Type.Record(Type.String(), Type.Array(Type.String()), { description: 'repository → digests whose scan was started' }),
    errors: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'repository → why no scan could be started' })),
  },
  { $id: 'ScanStarted' },
);
export type ScanStarted = Static<typeof ScanStarted>;
