import type { App } from '@platform/http-common';
import Type from 'typebox';
import { Version } from '../schemas/version.js';

/** Public routes: liveness and build information, as the original answered them. */
export async function healthRoutes(app: App, opts: { version: Version }): Promise<void> {
  app.get(
    '/v1/ecr/ping',
    {
      schema: { summary: 'Liveness: answers "pong"', response: { 200: Type.String() } },
      logLevel: 'warn',
    },
    // The original let browsers read ping and version from any origin.
    async (_request, reply) => reply.type('text/plain; charset=utf-8').header('access-control-allow-origin', '*').send('pong'),
  );

  app.get(
    '/v1/ecr/version',
    {
      schema: { summary: 'Version, git hash and build time of this build', response: { 200: Version } },
      logLevel: 'warn',
    },
    async (_request, reply) => reply.header('access-control-allow-origin', '*').send(opts.version),
  );
}
