import Type, { type Static } from 'typebox';
import { MAX_TAGS, NOT_AWS_RESERVED, orNull } from './common.js';
import { AccountId, GroupName, RepositoryShortName } from './repository.js';

/** IAM user names are `[\w+=,.@-]`, at most 64 characters; the service names them `{name}-{user}`. */
const USER_PATTERN = '^[A-Za-z0-9+=,.@_-]+$';
export const MAX_IAM_USER_NAME = 64;

const ShortUserName = Type.String({
  pattern: USER_PATTERN,
  minLength: 1,
  maxLength: MAX_IAM_USER_NAME - 2,
  description: 'a user of the repository: letters, digits and +=,.@_-; the IAM user is "{name}-{user}", at most 64 characters',
});

export const UserParams = Type.Object({ account: AccountId, group: GroupName, name: RepositoryShortName, user: ShortUserName });
export type UserParams = Static<typeof UserParams>;

/**
 * An IAM tag: IAM refuses keys and values outside these characters (the pattern of its API's `Tag`),
 * and keys beginning with `aws:`, with a `ValidationError`, after the service had already made sure
 * of the org's policy and group.
 */
const UserTag = Type.Object(
  {
    Key: Type.String({
      minLength: 1,
      maxLength: 128,
      pattern: `^${NOT_AWS_RESERVED}[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+$`,
      description: 'tag key, 1-128 letters, digits, spaces and _.:/=+-@, not beginning with aws:',
    }),
    Value: Type.String({
      maxLength: 256,
      pattern: '^[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*$',
      description: 'tag value, at most 256 letters, digits, spaces and _.:/=+-@',
    }),
  },
  { additionalProperties: false },
);

const UserTags = Type.Array(UserTag, {
  maxItems: MAX_TAGS,
  description: 'tags; Name, ResourceName, spinup:org and spinup:spaceid are set by the service and cannot be given',
});

export const CreateUserBody = Type.Object(
  {
    UserName: ShortUserName,
    Groups: Type.Optional(
      orNull(
        Type.Array(Type.Literal('SpinupECRAdminGroup'), {
          maxItems: 1,
          description: 'the groups to add the user to: only SpinupECRAdminGroup, which every user is in anyway',
        }),
      ),
    ),
    Tags: Type.Optional(orNull(UserTags)),
  },
  { additionalProperties: false },
);
export type CreateUserBody = Static<typeof CreateUserBody>;

export const UpdateUserBody = Type.Object(
  {
    ResetKey: Type.Optional(orNull(Type.Boolean({ description: 'issue a new access key and delete the old ones' }))),
    Tags: Type.Optional(orNull(UserTags)),
  },
  { additionalProperties: false },
);
export type UpdateUserBody = Static<typeof UpdateUserBody>;

const AccessKeyMeta = Type.Object({
  AccessKeyId: Type.String(),
  CreateDate: Type.String({ description: 'RFC 3339 time' }),
  Status: Type.String({ description: 'Active or Inactive' }),
  UserName: Type.String({ description: 'the IAM user name, "{name}-{user}"' }),
});

const OutTags = Type.Array(Type.Object({ Key: Type.String(), Value: Type.String() }));

/** A repository user as answered (the original's field order). */
export const User = Type.Object(
  {
    UserName: Type.String(),
    AccessKeys: Type.Array(AccessKeyMeta),
    Groups: Type.Array(Type.String(), { description: 'IAM groups, without the "-{org}" suffix' }),
    Tags: OutTags,
  },
  { $id: 'User' },
);
export type User = Static<typeof User>;

/**
 * A PUT's answer, in the README's order: UserName, AccessKey, DeletedAccessKeys, Tags. Tags is
 * always sent, yet optional: the serializer writes required properties first, which put it second.
 */
export const UpdatedUser = Type.Object(
  {
    UserName: Type.String(),
    AccessKey: Type.Optional(
      Type.Object({
        AccessKeyId: Type.String(),
        CreateDate: Type.String(),
        SecretAccessKey: Type.String({ description: 'shown once: AWS never answers it again' }),
        Status: Type.String(),
        UserName: Type.String(),
      }),
    ),
    DeletedAccessKeys: Type.Optional(Type.Array(Type.String())),
    Tags: Type.Optional(OutTags),
  },
  { $id: 'UpdatedUser' },
);
export type UpdatedUser = Static<typeof UpdatedUser>;

export const DeletedUser = Type.Object(
  {
    UserName: Type.String(),
    DeletedAccessKeys: Type.Array(Type.String()),
    RemovedFromGroups: Type.Array(Type.String()),
  },
  { $id: 'DeletedUser' },
);
export type DeletedUser = Static<typeof DeletedUser>;

export const UserNames = Type.Array(Type.String(), { description: 'the users of the repository, sorted' });
