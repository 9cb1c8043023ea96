import type { App } from '@platform/http-common';
import Type from 'typebox';
import { Version } from '../schemas/version.js';

/** Public routes: liveness and build information, as the original answered them. */
// async without await: Fastify awaits a plugin's promise (a plain function would need `done`).
// eslint-disable-next-line @typescript-eslint/require-await
export async function healthRoutes(app: App, opts: { version: Version }): Promise<void> {
  app.get(
    '/v1/ecr/ping',
    {
      schema: { summary: 'Liveness: answers "pong"', response: { 200: Type.String() } },
      logLevel: 'warn',
    },
    (_request, reply) => {
      reply.type('text/plain; charset=utf-8');
      return 'pong';
    },
  );

  app.get(
    '/v1/ecr/version',
    {
      schema: { summary: 'Version, git hash and build time of this build', response: { 200: Version } },
      logLevel: 'warn',
    },
    () => opts.version,
  );
}
