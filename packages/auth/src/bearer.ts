import { HttpProblem } from '@platform/http-common';
import type { FastifyRequest } from 'fastify';
import type { TokenStore } from './tokens-file.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Name of the credential that authorised this request, when one was needed. */
    principal?: string;
  }
}

const BEARER = /^Bearer[ ]+([^\s]+)\s*$/i;

/**
 * An onRequest hook that admits a request only with `Authorization: Bearer <token>` naming a valid
 * token of `store`, and records the token's name in `request.principal`.
 */
export function bearerAuth(store: TokenStore, realm: string) {
  const challenge = (error?: string) => ({
    'www-authenticate': `Bearer realm="${realm}"${error ? `, error="${error}"` : ''}`,
  });
  // async without await on purpose: Fastify treats a hook that returns a promise as finished when it
  // settles; a plain function would need the `done` callback instead.
  return async function requireBearer(request: FastifyRequest): Promise<void> {
    const header = request.headers.authorization;
    if (!header) {
      throw new HttpProblem(401, 'This operation needs an Authorization: Bearer token.', { headers: challenge() });
    }
    const token = BEARER.exec(header)?.[1];
    const name = token === undefined ? undefined : store.verify(token);
    if (name === undefined) {
      throw new HttpProblem(401, 'The bearer token is not valid.', { headers: challenge('invalid_token') });
    }
    request.principal = name;
  };
}
