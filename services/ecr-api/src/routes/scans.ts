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
    async (request) => scans.findings(request.params.account),
  );
}
