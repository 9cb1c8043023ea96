/**
 * The repository policy that lets other groups (spaces) of the same org pull: the original's
 * `AllowPullImagesFromSpaceAndOrg` statement, byte for byte, so policies it wrote read back the same.
 * A principal may pull when its `spinup:org` tag is the repository's and its `spinup:spaceid` tag
 * is the repository's group or one of `groups`.
 */
const PULL_SID = 'AllowPullImagesFromSpaceAndOrg';
const OWN_GROUP = '${aws:ResourceTag/spinup:spaceid}';
const SPACE_KEY = 'aws:PrincipalTag/spinup:spaceid';

/** SetRepositoryPolicy refuses a policy text longer than this (about 38 groups of the longest names). */
export const MAX_POLICY_LENGTH = 10_240;

export function repositoryPolicy(groups: readonly string[]): string {
  const others = [...new Set(groups)];
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {
        Sid: PULL_SID,
        Effect: 'Allow',
        Principal: { AWS: ['*'] },
        Action: ['ecr:GetAuthorizationToken', 'ecr:BatchCheckLayerAvailability', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchGetImage'],
        Condition: {
          StringEqualsIgnoreCase: {
            'aws:PrincipalTag/spinup:org': ['${aws:ResourceTag/spinup:org}'],
            [SPACE_KEY]: [OWN_GROUP, ...others],
          },
        },
      },
    ],
  });
}

/** The other groups a policy lets pull ([] without a policy, or without the service's statement). */
export function groupsFromPolicy(text: string | undefined): string[] {
  if (!text) return [];
  let policy: unknown;
  try {
    policy = JSON.parse(text);
  } catch {
    return [];
  }
  const statements = (policy as { Statement?: unknown }).Statement;
  const list = Array.isArray(statements) ? statements : [statements];
  const statement = list.find((s) => (s as { Sid?: unknown } | undefined)?.Sid === PULL_SID) as
    { Condition?: { StringEqualsIgnoreCase?: Record<string, unknown> } } | undefined;
  const values = statement?.Condition?.StringEqualsIgnoreCase?.[SPACE_KEY];
  const groups = Array.isArray(values) ? values : values === undefined ? [] : [values];
  return groups.filter((g): g is string => typeof g === 'string' && g !== OWN_GROUP);
}
