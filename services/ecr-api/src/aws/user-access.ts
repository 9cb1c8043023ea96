import {
  AttachGroupPolicyCommand,
  CreateGroupCommand,
  CreatePolicyCommand,
  CreatePolicyVersionCommand,
  DeletePolicyVersionCommand,
  GetGroupCommand,
  GetPolicyCommand,
  GetPolicyVersionCommand,
  paginateListPolicyVersions,
  type IAMClient,
  type PolicyVersion,
} from '@aws-sdk/client-iam';

/**
 * The IAM policy and group every repository user of an org is in (the original's names, at the
 * path `/spinup/{org}/`): one shared policy, attribute-based, so a user may push and pull only
 * the repository its own tags name. A principal tag `ResourceName` = `{group}/{name}` (with
 * `spinup:org` and `spinup:spaceid`) must equal the repository's `Name` (and org and group) tags,
 * which the service sets and never lets a caller change, on the repository and on the user.
 */
export const ADMIN_GROUP = 'SpinupECRAdminGroup';
const ADMIN_POLICY = 'SpinupECRAdminPolicy';
export const RESOURCE_NAME_TAG = 'ResourceName';
/** IAM keeps at most 5 versions of a managed policy. */
const MAX_POLICY_VERSIONS = 5;

export function adminPolicyDocument(): Record<string, unknown> {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'AllowActionsOnRepositoriesInSpaceAndOrg',
        Effect: 'Allow',
        // The original's actions on the user's own repository: push, pull, read, delete images
        // and lifecycle policies, tag mutability. Not its ecr:DeleteRegistryPolicy: a registry has
        // no resource tags, so under these conditions it never allowed anything.
        Action: [
          'ecr:BatchCheckLayerAvailability',
          'ecr:BatchDeleteImage',
          'ecr:BatchGetImage',
          'ecr:CompleteLayerUpload',
          'ecr:DeleteLifecyclePolicy',
          'ecr:DescribeImageScanFindings',
          'ecr:DescribeImages',
          'ecr:GetDownloadUrlForLayer',
          'ecr:InitiateLayerUpload',
          'ecr:ListImages',
          'ecr:PutImage',
          'ecr:PutImageTagMutability',
          'ecr:PutLifecyclePolicy',
          'ecr:UploadLayerPart',
        ],
        Resource: '*',
        // StringEquals, where the original had StringEqualsIgnoreCase: the service sets these tags
        // on both sides itself, so their case always matches, and the org "Dev" is not the org "dev".
        Condition: {
          StringEquals: {
            'aws:ResourceTag/Name': `\${aws:PrincipalTag/${RESOURCE_NAME_TAG}}`,
            'aws:ResourceTag/spinup:org': '${aws:PrincipalTag/spinup:org}',
            'aws:ResourceTag/spinup:spaceid': '${aws:PrincipalTag/spinup:spaceid}',
          },
        },
      },
      { Sid: 'AllowDockerLogin', Effect: 'Allow', Action: ['ecr:GetAuthorizationToken'], Resource: '*' },
    ],
  };
}

/** JSON with sorted keys: two policy documents are the same policy when these are equal. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** IAM answers policy documents URL-encoded. */
function decodeDocument(document: string | undefined): unknown {
  if (!document) return undefined;
  try {
    return JSON.parse(decodeURIComponent(document));
  } catch {
    return undefined;
  }
}

const isName = (err: unknown, name: string) => (err as Error | undefined)?.name === name;

/** The versions to delete so that one more fits under IAM's limit: the oldest non-default ones. */
export function versionsToPrune(versions: PolicyVersion[], limit = MAX_POLICY_VERSIONS): string[] {
  const old = versions
    .filter((v) => !v.IsDefaultVersion && v.VersionId)
    .sort((a, b) => (a.CreateDate?.getTime() ?? 0) - (b.CreateDate?.getTime() ?? 0));
  const excess = versions.length - (limit - 1);
  return old.slice(0, Math.max(0, excess)).map((v) => v.VersionId!);
}

export class UserAccess {
  constructor(
    private readonly org: string,
    private readonly partition: string,
  ) {}

  get path(): string {
    return `/spinup/${this.org}/`;
  }
  get groupName(): string {
    return `${ADMIN_GROUP}-${this.org}`;
  }
  get policyName(): string {
    return `${ADMIN_POLICY}-${this.org}`;
  }
  policyArn(account: string): string {
    return `arn:${this.partition}:iam::${account}:policy${this.path}${this.policyName}`;
  }

  /**
   * Makes sure the org's policy (with today's document) and group exist and are attached.
   * Idempotent and safe against a concurrent request doing the same: "already exists" is success.
   * Steady state: GetPolicy, GetPolicyVersion, GetGroup, AttachGroupPolicy (4 IAM calls).
   */
  async ensure(iam: IAMClient, account: string): Promise<void> {
    const arn = this.policyArn(account);
    const document = adminPolicyDocument();
    await this.ensurePolicy(iam, arn, document);
    try {
      await iam.send(new GetGroupCommand({ GroupName: this.groupName, MaxItems: 1 }));
    } catch (err) {
      if (!isName(err, 'NoSuchEntityException')) throw err;
      try {
        await iam.send(new CreateGroupCommand({ GroupName: this.groupName, Path: this.path }));
      } catch (createErr) {
        if (!isName(createErr, 'EntityAlreadyExistsException')) throw createErr;
      }
    }
    // Attaching an attached policy is a no-op in IAM: one call instead of list-then-attach.
    await iam.send(new AttachGroupPolicyCommand({ GroupName: this.groupName, PolicyArn: arn }));
  }

  private async ensurePolicy(iam: IAMClient, arn: string, document: Record<string, unknown>): Promise<void> {
    let defaultVersion: string | undefined;
    try {
      defaultVersion = (await iam.send(new GetPolicyCommand({ PolicyArn: arn }))).Policy?.DefaultVersionId;
    } catch (err) {
      if (!isName(err, 'NoSuchEntityException')) throw err;
      try {
        await iam.send(
          new CreatePolicyCommand({
            PolicyName: this.policyName,
            Path: this.path,
            PolicyDocument: JSON.stringify(document),
            Description: `Push and pull on the ECR repository a user's tags name (spinup org ${this.org})`,
          }),
        );
        return;
      } catch (createErr) {
        if (!isName(createErr, 'EntityAlreadyExistsException')) throw createErr;
        defaultVersion = (await iam.send(new GetPolicyCommand({ PolicyArn: arn }))).Policy?.DefaultVersionId;
      }
    }
    const current = defaultVersion
      ? (await iam.send(new GetPolicyVersionCommand({ PolicyArn: arn, VersionId: defaultVersion }))).PolicyVersion?.Document
      : undefined;
    if (canonicalJson(decodeDocument(current)) === canonicalJson(document)) return;
    await this.newVersion(iam, arn, document);
  }

  /** A new default version, after deleting the oldest ones so it fits (retried once if a concurrent update took the room). */
  private async newVersion(iam: IAMClient, arn: string, document: Record<string, unknown>, retry = true): Promise<void> {
    const versions: PolicyVersion[] = [];
    for await (const page of paginateListPolicyVersions({ client: iam }, { PolicyArn: arn })) versions.push(...(page.Versions ?? []));
    for (const VersionId of versionsToPrune(versions)) {
      try {
        await iam.send(new DeletePolicyVersionCommand({ PolicyArn: arn, VersionId }));
      } catch (err) {
        if (!isName(err, 'NoSuchEntityException')) throw err; // pruned by a concurrent request
      }
    }
    try {
      await iam.send(new CreatePolicyVersionCommand({ PolicyArn: arn, PolicyDocument: JSON.stringify(document), SetAsDefault: true }));
    } catch (err) {
      if (retry && isName(err, 'LimitExceededException')) return this.newVersion(iam, arn, document, false);
      throw err;
    }
  }
}
