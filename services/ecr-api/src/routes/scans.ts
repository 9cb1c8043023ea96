import type { App } from '@platform/http-common';
import type { onRequestAsyncHookHandler } from 'fastify';
import Type from 'typebox';
import type { ScanStore } from '../aws/scans.js';
import { awsErrors } from '../schemas/common.js';
import { RepositoryFindings, ScanStarted } from '../schemas/image.js';
import { AccountParams } from '../schemas/repository.js';

const security = [{ xAuthToken: [] }];

export async function scanRoutes(app: App, opts: { scans: ScanStore; authorize: onRequestAsyncHookHandler }): Promise<void> {
  const { scans } = opts;
  app.addHook('onRequest', opts.authorize);

  app.get(
    '/v1/ecr/:account/scanRepositories',
    {
      // Fastify answers HEAD with the GET's handler; a HEAD must not start scans.
      exposeHeadRoute: false,
      schema: {
        summary:
          "Start a scan of the latest image of each of this org's repositories not scanned in the past 24 hours (a GET with side effects, as the original's)",
        params: AccountParams,
        security,
        response: { 200: ScanStarted, ...awsErrors },
      },
    },
    async (request) => scans.start(request.params.account),
  );

  app.get(
    '/v1/ecr/:account/scanFindings',
    {
      schema: {
        summary: "Scan findings of the latest image of each of this org's repositories (never-scanned ones left out)",
        params: AccountParams,
        security,
        response: { 200: Type.Array(RepositoryFindings), ...awsErrors },
      },
    },
    // JSON text (or, past a few MB, a stream of it) in the schema's field order, which Fastify sends
    // as it is (see findingsJson); the type provider only knows the schema's object form.
    async (request, reply) => {
      const json = await scans.findingsJson(request.params.account);
      return reply.type('application/json; charset=utf-8').send(json as unknown as RepositoryFindings[]);
    },
  );
}
