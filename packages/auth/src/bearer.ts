import { HttpProblem } from '@platform/http-common';
import type { FastifyInstance, FastifyRequest } from 'fastify';
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
 *
 * `app`'s requests carry `principal` from the start (Fastify's decorateRequest, as Fastify advises):
 * a property added to some requests as they are handled gives those another hidden class than the
 * rest, and the property accesses of the request path see both.
 */
export function bearerAuth(app: FastifyInstance, store: TokenStore, realm: string) {
  if (!app.hasRequestDecorator('principal')) app.decorateRequest('principal', undefined);
  const challenge = (error?: string) => ({
    'www-authenticate': `Bearer realm="${realm}"${error ? `, error="${error}"` : ''}`,
  });
  // async without await on purpose: Fastify treats a hook that returns a promise as finished when it
  // settles; a plain function would need the `done` callback instead.
  return async function requireBearer(request: FastifyRequest): Promise<void> {
    const header = request.headers.authorization;
    const token = header === undefined ? undefined : BEARER.exec(header)?.[1];
    // No bearer token at all, or another scheme: a challenge without an error code (RFC 6750, 3.1).
    if (token === undefined) {
      throw new HttpProblem(401, 'This operation needs an Authorization: Bearer token.', { headers: challenge() });
    }
    const name = store.verify(token);
    if (name === undefined) {
      throw new HttpProblem(401, 'The bearer token is not valid.', { headers: challenge('invalid_token') });
    }
    request.principal = name;
  };
}
