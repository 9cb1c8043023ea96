import Type, { type Static } from 'typebox';
import { MAX_TAGS, orBlank, orNull, Tag } from './common.js';

/**
 * ECR's repository naming rule: path components `[a-z0-9]+(?:[._-][a-z0-9]+)*` joined by "/",
 * 2-256 characters in all. The service names repositories `{group}/{name}`, each one path component, so
 * that every repository it creates can be addressed by GET /{group}/{name}.
 */
const COMPONENT_PATTERN = '^[a-z0-9]+(?:[._-][a-z0-9]+)*$';
export const MAX_REPOSITORY_NAME = 256;

const component = (what: string) =>
  Type.String({
    pattern: COMPONENT_PATTERN,
    minLength: 1,
    maxLength: MAX_REPOSITORY_NAME - 2,
    description: `a ${what}: lowercase letters and digits, separated by single ".", "_" or "-"`,
  });

export const AccountId = Type.String({ pattern: '^[0-9]{12}$', description: 'a 12-digit AWS account id' });
export const GroupName = component('group (space id)');
export const RepositoryShortName = component('repository name');

export const AccountParams = Type.Object({ account: AccountId });
export const GroupParams = Type.Object({ account: AccountId, group: GroupName });
export const RepositoryParams = Type.Object({ account: AccountId, group: GroupName, name: RepositoryShortName });
export type RepositoryParams = Static<typeof RepositoryParams>;

/** Go's strconv.ParseBool spellings, as the original accepted, or a JSON boolean. */
const BOOL_STRINGS = ['1', 't', 'T', 'TRUE', 'true', 'True', '0', 'f', 'F', 'FALSE', 'false', 'False'] as const;
export const ScanOnPush = Type.Union([Type.Boolean(), Type.Union(BOOL_STRINGS.map((s) => Type.Literal(s)))], {
  description: 'scan images when pushed: "true" or "false" (a JSON boolean works too)',
});
export type ScanOnPush = Static<typeof ScanOnPush>;

export function parseScanOnPush(value: ScanOnPush): boolean {
  return typeof value === 'boolean' ? value : ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value);
}

/** Other groups (spaces) of the org whose principals may pull from the repository. */
const Groups = Type.Array(GroupName, {
  maxItems: 100,
  description: "other groups (spaces) of the org that may pull (the repository policy's AllowPullImagesFromSpaceAndOrg statement)",
});

const Tags = Type.Array(Tag, {
  maxItems: MAX_TAGS,
  description: 'tags; Name, spinup:org and spinup:spaceid are set by the service and cannot be given',
});

export const CreateRepositoryBody = Type.Object(
  {
    RepositoryName: RepositoryShortName,
    ScanOnPush: Type.Optional(
      orBlank(ScanOnPush, { description: 'scan images when pushed: "true" or "false" (or a JSON boolean); default false' }),
    ),
    ImageTagMutability: Type.Optional(
      orBlank(Type.Union([Type.Literal('MUTABLE'), Type.Literal('IMMUTABLE')], { description: 'default MUTABLE' })),
    ),
    EncryptionType: Type.Optional(
      orBlank(Type.Union([Type.Literal('AES256'), Type.Literal('KMS')], { description: 'default AES256, or KMS when KmsKeyId is given' })),
    ),
    KmsKeyId: Type.Optional(
      orBlank(Type.String({ minLength: 1, maxLength: 2048, description: 'KMS key (id, ARN or alias): encrypts with KMS' })),
    ),
    Groups: Type.Optional(orNull(Groups)),
    Tags: Type.Optional(orNull(Tags)),
  },
  { additionalProperties: false },
);
export type CreateRepositoryBody = Static<typeof CreateRepositoryBody>;

export const UpdateRepositoryBody = Type.Object(
  {
    ScanOnPush: Type.Optional(
      orBlank(ScanOnPush, { description: 'scan images when pushed: "true" or "false" (or a JSON boolean); "" or null: unchanged' }),
    ),
    Groups: Type.Optional(orNull(Groups, { description: 'replaces the groups that may pull ([]: the own group only); null: unchanged' })),
    Tags: Type.Optional(
      orNull(Type.Array(Tag, { maxItems: MAX_TAGS, description: 'merged into the existing tags; the org tags cannot be changed' }), {
        description: 'merged into the existing tags; the org tags cannot be changed; null: unchanged',
      }),
    ),
  },
  { additionalProperties: false },
);
export type UpdateRepositoryBody = Static<typeof UpdateRepositoryBody>;

const repositoryFields = {
  CreatedAt: Type.String({ description: 'RFC 3339 time' }),
  EncryptionType: Type.String(),
  Groups: Type.Array(Type.String(), { description: 'other groups (spaces) of the org that may pull' }),
  KmsKeyId: Type.String(),
  ScanOnPush: Type.String({ description: '"true" or "false"' }),
  ImageTagMutability: Type.String(),
  RegistryId: Type.String(),
  RepositoryArn: Type.String(),
  RepositoryName: Type.String(),
  RepositoryUri: Type.String(),
  Tags: Type.Array(Type.Object({ Key: Type.String(), Value: Type.String() })),
};

/** A repository as answered; the field order is the original's wire order. */
export const Repository = Type.Object(repositoryFields, { $id: 'Repository' });
export type Repository = Static<typeof Repository>;

/** DELETE's answer: the repository, and the IAM users deleted with it. */
export const DeletedRepository = Type.Object(
  { ...repositoryFields, Users: Type.Array(Type.String(), { description: 'the repository users deleted with it' }) },
  { $id: 'DeletedRepository' },
);
export type DeletedRepository = Static<typeof DeletedRepository>;

export const RepositoryNames = Type.Array(Type.String(), { description: 'repository names, "{group}/{name}"' });
