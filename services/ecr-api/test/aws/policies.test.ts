import type { PolicyVersion } from '@aws-sdk/client-iam';
import { ORIGINAL_USER_ACTIONS } from '../support/original-policy.js';
import { describe, expect, it } from 'vitest';
import { groupsFromPolicy, repositoryPolicy } from '../../src/aws/repository-policy.js';
import { adminPolicyDocument, canonicalJson, versionsToPrune } from '../../src/aws/user-access.js';

describe('repository policy', () => {
  it('reads back the groups it writes, without the own group, deduplicated', () => {
    expect(groupsFromPolicy(repositoryPolicy(['a', 'b', 'a']))).toEqual(['a', 'b']);
    expect(groupsFromPolicy(repositoryPolicy([]))).toEqual([]);
  });

  it('reads a reformatted policy (AWS may answer other whitespace) and a single-string condition', () => {
    const text = JSON.stringify(JSON.parse(repositoryPolicy(['x'])), null, 2);
    expect(groupsFromPolicy(text)).toEqual(['x']);
    const single = JSON.stringify({
      Statement: {
        Sid: 'AllowPullImagesFromSpaceAndOrg',
        Condition: { StringEqualsIgnoreCase: { 'aws:PrincipalTag/spinup:spaceid': 'y' } },
      },
    });
    expect(groupsFromPolicy(single)).toEqual(['y']);
  });

  it('finds no groups in no policy, an invalid one, or one without the statement', () => {
    expect(groupsFromPolicy(undefined)).toEqual([]);
    expect(groupsFromPolicy('{not json')).toEqual([]);
    expect(groupsFromPolicy(JSON.stringify({ Statement: [{ Sid: 'Other', Effect: 'Allow' }] }))).toEqual([]);
  });
});

describe("repository users' shared policy", () => {
  it("grants the original's actions on the user's own repository, but DeleteRegistryPolicy (and docker login apart)", () => {
    const [own, login] = adminPolicyDocument().Statement as { Action: string[]; Resource: string; Condition?: unknown }[];
    const expected = ORIGINAL_USER_ACTIONS.filter((a) => a !== 'ecr:DeleteRegistryPolicy' && a !== 'ecr:GetAuthorizationToken');
    expect([...own!.Action].sort()).toEqual(expected.sort());
    expect(Object.keys(own!.Condition as object)).toEqual(['StringEquals']);
    expect(login).toMatchObject({ Action: ['ecr:GetAuthorizationToken'], Resource: '*' });
    expect(login).not.toHaveProperty('Condition');
  });
});

describe('policy versions', () => {
  const v = (id: string, day: number, isDefault = false): PolicyVersion => ({
    VersionId: id,
    CreateDate: new Date(Date.UTC(2026, 0, day)),
    IsDefaultVersion: isDefault,
  });

  it('prunes the oldest non-default versions so that one more fits under 5', () => {
    // Five (IAM's limit): the oldest that is not the default goes.
    expect(versionsToPrune([v('v1', 1), v('v2', 2, true), v('v3', 3), v('v4', 4), v('v5', 5)])).toEqual(['v1']);
    expect(versionsToPrune([v('v3', 3), v('v1', 1, true), v('v5', 5), v('v2', 2), v('v4', 4)])).toEqual(['v2']);
    // Four: the new one fits.
    expect(versionsToPrune([v('v1', 1, true), v('v2', 2), v('v3', 3), v('v4', 4)])).toEqual([]);
    expect(versionsToPrune([v('v1', 1, true)])).toEqual([]);
  });

  it('compares documents by content, not key order or whitespace', () => {
    expect(canonicalJson({ b: [1, { d: 2, c: 3 }], a: 'x' })).toBe(canonicalJson(JSON.parse('{ "a": "x", "b": [1, {"c": 3, "d": 2}] }')));
    expect(canonicalJson({ a: [1, 2] })).not.toBe(canonicalJson({ a: [2, 1] }));
  });
});
