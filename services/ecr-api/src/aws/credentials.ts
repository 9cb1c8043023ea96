import { AssumeRoleCommand } from '@aws-sdk/client-sts';
import type { FastifyBaseLogger } from 'fastify';
import type { AccountClients, AwsClientFactory, AwsCredentials } from './clients.js';
import { outcomeOf, type AwsMetrics } from './metrics.js';

/** AssumeRole into an account failed; errors.ts turns it into 403/429/502 without AWS's wording. */
export class AssumeRoleError extends Error {
  constructor(
    readonly account: string,
    readonly roleArn: string,
    cause: unknown,
  ) {
    super(`AssumeRole ${roleArn} failed: ${outcomeOf(cause)}`, { cause });
    this.name = 'AssumeRoleError';
  }
}

export interface AccountSession extends AccountClients {
  account: string;
  /** When the assumed credentials expire, on the cache's clock (ms). */
  expiresAt: number;
}

export interface AccountSessionsOptions {
  clients: AwsClientFactory;
  role: string;
  org: string;
  externalId?: string;
  region: string;
  durationSeconds: number;
  /** Refresh this long before the credentials expire, so no call is signed with nearly dead keys. */
  refreshMarginMs?: number;
  metrics: AwsMetrics;
  log?: FastifyBaseLogger;
  /** The clock (tests move it forward to expire credentials). */
  now?: () => number;
}

interface Entry {
  session?: AccountSession;
  refreshing?: Promise<AccountSession>;
}

/** The IAM partition of a region: role ARNs differ in China and GovCloud. */
export function partitionOf(region: string): string {
  if (region.startsWith('cn-')) return 'aws-cn';
  if (region.startsWith('us-gov-')) return 'aws-us-gov';
  if (region.startsWith('us-iso-')) return 'aws-iso';
  if (region.startsWith('us-isob-')) return 'aws-iso-b';
  return 'aws';
}

/**
 * Assumed-role sessions, one per account: `arn:aws:iam::{account}:role/{role}` with the session tag
 * `spinup:org`. Credentials are cached until `refreshMarginMs` before they expire, so there is one
 * AssumeRole per account per credential lifetime, not one per request; concurrent requests for an
 * account share the AssumeRole in flight. A failed refresh keeps serving the previous credentials
 * while they are still valid.
 */
export class AccountSessions {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly margin: number;
  private readonly partition: string;
  private readonly sessionName: string;

  constructor(private readonly opts: AccountSessionsOptions) {
    this.now = opts.now ?? Date.now;
    this.margin = Math.min(opts.refreshMarginMs ?? 5 * 60_000, (opts.durationSeconds * 1000) / 2);
    this.partition = partitionOf(opts.region);
    // RoleSessionName: 2-64 of [\w+=,.@-]; it shows in the account's CloudTrail.
    this.sessionName = `ecr-api-${opts.org}`.replace(/[^\w+=,.@-]/g, '-').slice(0, 64);
  }

  roleArn(account: string): string {
    return `arn:${this.partition}:iam::${account}:role/${this.opts.role.replace(/^\/+/, '')}`;
  }

  async get(account: string): Promise<AccountSession> {
    let entry = this.entries.get(account);
    if (!entry) {
      entry = {};
      this.entries.set(account, entry);
    }
    const current = entry.session;
    if (current && this.now() < current.expiresAt - this.margin) return current;
    let refreshing = entry.refreshing;
    if (!refreshing) {
      const e = entry;
      refreshing = e.refreshing = this.assume(account)
        .then((session) => {
          e.session = session;
          return session;
        })
        .finally(() => {
          e.refreshing = undefined;
        });
    }
    try {
      return await refreshing;
    } catch (err) {
      // STS hiccup while the old credentials still work (we refresh early): keep using them.
      if (current && this.now() < current.expiresAt - 30_000) {
        this.opts.log?.warn({ account, err: outcomeOf(err) }, 'AssumeRole refresh failed; using the cached credentials until they expire');
        return current;
      }
      if (!current) this.entries.delete(account);
      throw err;
    }
  }

  private async assume(account: string): Promise<AccountSession> {
    const roleArn = this.roleArn(account);
    let credentials: AwsCredentials;
    let expiresAt: number;
    try {
      const out = await this.opts.clients.sts().send(
        new AssumeRoleCommand({
          RoleArn: roleArn,
          RoleSessionName: this.sessionName,
          DurationSeconds: this.opts.durationSeconds,
          ...(this.opts.externalId ? { ExternalId: this.opts.externalId } : {}),
          Tags: [{ Key: 'spinup:org', Value: this.opts.org }],
        }),
      );
      const c = out.Credentials;
      if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken) throw new Error('AssumeRole answered without credentials');
      // The lifetime AWS granted, measured on our clock and never longer than asked for: a host
      // clock behind AWS's cannot make us keep credentials past their real expiry.
      const requested = this.opts.durationSeconds * 1000;
      const granted = c.Expiration ? c.Expiration.getTime() - Date.now() : requested;
      expiresAt = this.now() + Math.min(granted, requested);
      credentials = {
        accessKeyId: c.AccessKeyId,
        secretAccessKey: c.SecretAccessKey,
        sessionToken: c.SessionToken,
        ...(c.Expiration ? { expiration: c.Expiration } : {}),
      };
      this.opts.metrics.assumeRole.inc({ outcome: 'success' });
    } catch (err) {
      this.opts.metrics.assumeRole.inc({ outcome: outcomeOf(err) });
      throw new AssumeRoleError(account, roleArn, err);
    }
    this.opts.log?.debug({ account, roleArn, expiresAt: new Date(expiresAt).toISOString() }, 'assumed role');
    return { account, expiresAt, ...this.opts.clients.forAccount(credentials) };
  }
}
