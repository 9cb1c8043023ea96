import type { App } from '@platform/http-common';
import type { FastifySchema } from 'fastify';

/**
 * CORS preflight as the original answers it: OPTIONS on any path, without a token, is 200 with an
 * empty body, `Access-Control-Allow-Origin: *` and `Access-Control-Allow-Headers: X-Auth-Token`.
 */
export async function corsRoutes(app: App): Promise<void> {
  app.route({
    method: 'OPTIONS',
    url: '*',
    // `summary` is @fastify/swagger's addition to the route schema, which tsc -b does not see here (the lint config does).
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    schema: {
      summary: 'CORS preflight, on any path and without a token: 200, Access-Control-Allow-Origin *, Allow-Headers X-Auth-Token',
    } as FastifySchema,
    logLevel: 'warn',
    handler: async (_request, reply) =>
      reply.code(200).header('access-control-allow-origin', '*').header('access-control-allow-headers', 'X-Auth-Token').send(),
  });
}
