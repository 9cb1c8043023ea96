import { AssumeRoleCommand } from '@aws-sdk/client-sts';
import type { FastifyBaseLogger } from 'fastify';
import type { InitializeMiddleware, MetadataBearer, MiddlewareStack } from '@smithy/types';
import { LRUCache } from 'lru-cache';
import type { AccountClient, AccountClients, AwsClientFactory, AwsCredentials } from './clients.js';
import { currentDeadline, Deadline, withDeadline } from './deadline.js';
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
  /** How long one AssumeRole may take, retries included; it runs apart from the request that started it. */
  deadlineMs: number;
  /** Accounts whose sessions are kept; the least recently used beyond this are dropped. */
  maxAccounts?: number;
  metrics: AwsMetrics;
  log?: FastifyBaseLogger;
  /** The clock (tests move it forward to expire credentials). */
  now?: () => number;
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
 * AWS refused an account's assumed credentials themselves: expired before the cache's clock says
 * so (the host's clock stepped back, a suspended VM), or invalidated. A fresh AssumeRole is the cure.
 */
export const SESSION_REJECTED = new Set(['ExpiredToken', 'ExpiredTokenException', 'InvalidClientTokenId', 'UnrecognizedClientException']);

/** A refresh that fails this close to the old credentials' expiry no longer falls back on them. */
const STALE_GRACE_MS = 30_000;

/**
 * Assumed-role sessions, one per account: `arn:aws:iam::{account}:role/{role}` with the session tag
 * `spinup:org`. Credentials are cached (LRU, at most `maxAccounts`) until `refreshMarginMs` before
 * they expire, so there is one AssumeRole per account per credential lifetime, not one per
 * request; concurrent requests for an account share the AssumeRole in flight. A failed refresh
 * keeps serving the previous credentials while they are still valid.
 */
export class AccountSessions {
  private readonly cache: LRUCache<string, AccountSession>;
  private readonly now: () => number;
  private readonly margin: number;
  private readonly partition: string;
  private readonly sessionName: string;

  constructor(private readonly opts: AccountSessionsOptions) {
    const now = (this.now = opts.now ?? Date.now);
    this.margin = Math.min(opts.refreshMarginMs ?? 5 * 60_000, (opts.durationSeconds * 1000) / 2);
    this.partition = partitionOf(opts.region);
    // RoleSessionName: 2-64 of [\w+=,.@-]; it shows in the account's CloudTrail.
    this.sessionName = `ecr-api-${opts.org}`.replace(/[^\w+=,.@-]/g, '-').slice(0, 64);
    this.cache = new LRUCache<string, AccountSession>({
      max: opts.maxAccounts ?? 1000,
      perf: { now },
      // An expired entry stays until replaced: it is the fallback when a refresh fails.
      noDeleteOnStaleGet: true,
      noDeleteOnFetchRejection: true,
      // The AssumeRole runs under a deadline of its own, not the one of the request that happened
      // to start it: the requests that join it later each wait within their own deadline.
      fetchMethod: async (account, _stale, { options }) => {
        const deadline = Deadline.in(opts.deadlineMs);
        try {
          const session = await withDeadline(deadline, () => this.assume(account));
          options.ttl = Math.max(1, session.expiresAt - this.margin - this.now());
          return session;
        } finally {
          deadline.dispose();
        }
      },
    });
  }

  roleArn(account: string): string {
    return `arn:${this.partition}:iam::${account}:role/${this.opts.role.replace(/^\/+/, '')}`;
  }

  async get(account: string): Promise<AccountSession> {
    // Due for refresh but still valid: answered at once, the AssumeRole runs (or already runs) apart.
    // A request does not wait on STS while it holds working credentials; a hung or failing STS
    // costs nothing until the credentials are too close to their expiry.
    const cached = this.cache.peek(account, { allowStale: true });
    if (cached && this.cache.getRemainingTTL(account) <= 0 && this.now() < cached.expiresAt - STALE_GRACE_MS) {
      this.cache.fetch(account).catch((err: unknown) => {
        this.opts.log?.warn({ account, err: outcomeOf(err) }, 'AssumeRole refresh failed; using the cached credentials until they expire');
      });
      return cached;
    }
    const wait = this.cache.fetch(account);
    try {
      const session = await (currentDeadline()?.race(wait) ?? wait);
      if (session) return session;
      throw new Error('the credential cache answered nothing');
    } catch (err) {
      // STS hiccup while the old credentials still work (we refresh early): keep using them.
      const stale = this.cache.get(account, { allowStale: true });
      if (stale && this.now() < stale.expiresAt - STALE_GRACE_MS) {
        this.opts.log?.warn({ account, err: outcomeOf(err) }, 'AssumeRole refresh failed; using the cached credentials until they expire');
        return stale;
      }
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
    // Not `{ ...clients }`: a spread would build every client now; each is built on first use.
    const clients = this.opts.clients.forAccount(credentials, (client) => this.dropWhenRejected(client, session));
    const session: AccountSession = Object.assign(clients, { account, expiresAt });
    return session;
  }

  /**
   * Forgets the session when AWS refuses its credentials, so that the next request assumes the
   * role again instead of being refused until the cache's TTL (up to the session's lifetime).
   * Added to each of the session's clients when it is built, on first use.
   */
  private dropWhenRejected(client: AccountClient, session: AccountSession): void {
    const middleware: InitializeMiddleware<object, MetadataBearer> = (next) => async (args) => {
      try {
        return await next(args);
      } catch (err) {
        if (SESSION_REJECTED.has((err as Error).name) && this.cache.peek(session.account, { allowStale: true }) === session) {
          this.cache.delete(session.account);
          this.opts.log?.warn(
            { account: session.account, err: outcomeOf(err) },
            'AWS refused the assumed credentials; the role is assumed again on the next request',
          );
        }
        throw err;
      }
    };
    (client.middlewareStack as unknown as MiddlewareStack<object, MetadataBearer>).add(middleware, {
      step: 'initialize',
      name: 'ecrApiDropRejectedSession',
      override: true,
    });
  }
}
