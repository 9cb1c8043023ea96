import { HttpProblem } from '@platform/http-common';
import bcrypt from 'bcryptjs';
import type { FastifyRequest } from 'fastify';

/** `$2a$`, `$2b$` or `$2y$`, a two-digit cost, 53 characters of salt and hash. */
const BCRYPT = /^\$2[aby]\$(\d{2})\$[./A-Za-z0-9]{53}$/;

export interface XAuthTokenOptions {
  /** Highest bcrypt cost accepted: a client-chosen cost of 31 would pin a core for hours. */
  maxCost?: number;
  /** How many distinct hashes to remember as verified. */
  cacheSize?: number;
}

/**
 * Verifies `X-Auth-Token` as the original ecr-api does: the client sends a bcrypt hash of the
 * shared key, and the service checks the key against it. bcrypt is slow on purpose, so hashes
 * that verified are remembered (bounded, oldest evicted) and each client pays the cost once.
 */
export class XAuthTokenVerifier {
  private readonly good = new Map<string, true>();
  private readonly maxCost: number;
  private readonly cacheSize: number;

  constructor(
    private readonly sharedKey: string,
    opts: XAuthTokenOptions = {},
  ) {
    if (!sharedKey) throw new Error('X-Auth-Token verification needs a non-empty shared key');
    this.maxCost = opts.maxCost ?? 14;
    this.cacheSize = opts.cacheSize ?? 1024;
  }

  async verify(header: string | undefined): Promise<boolean> {
    if (!header) return false;
    if (this.good.has(header)) return true;
    const match = BCRYPT.exec(header);
    if (!match || Number(match[1]) > this.maxCost || Number(match[1]) < 4) return false;
    const ok = await bcrypt.compare(this.sharedKey, header);
    if (ok) {
      if (this.good.size >= this.cacheSize) this.good.delete(this.good.keys().next().value as string);
      this.good.set(header, true);
    }
    return ok;
  }

  /** A preHandler answering 403 (as the original does) without a valid token. */
  hook() {
    return async (request: FastifyRequest): Promise<void> => {
      const header = request.headers['x-auth-token'];
      if (!(await this.verify(Array.isArray(header) ? header[0] : header))) {
        throw new HttpProblem(403, 'A valid X-Auth-Token is required.');
      }
    };
  }
}
