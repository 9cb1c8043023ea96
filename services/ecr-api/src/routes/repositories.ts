import { badRequest, type App } from '@platform/http-common';
import type { onRequestAsyncHookHandler } from 'fastify';
import type { RepositoryStore } from '../aws/repositories.js';
import { awsErrors, given, Problem } from '../schemas/common.js';
import { Image } from '../schemas/image.js';
import {
  AccountParams,
  CreateRepositoryBody,
  DeletedRepository,
  GroupParams,
  parseScanOnPush,
  Repository,
  RepositoryNames,
  RepositoryParams,
  UpdateRepositoryBody,
} from '../schemas/repository.js';
import Type from 'typebox';

export interface RepositoryRoutesOptions {
  store: RepositoryStore;
  /** The X-Auth-Token check, run before the request is even parsed. */
  authorize: onRequestAsyncHookHandler;
}

const security = [{ xAuthToken: [] }];
const writeErrors = { ...awsErrors, 413: Problem, 415: Problem };

export async function repositoryRoutes(app: App, opts: RepositoryRoutesOptions): Promise<void> {
  const { store } = opts;
  // Every route of this plugin needs a valid X-Auth-Token; the hook is scoped to this plugin.
  app.addHook('onRequest', opts.authorize);

  app.get(
    '/v1/ecr/:account/repositories',
    {
      schema: {
        summary: "List this org's repositories in the account",
        params: AccountParams,
        security,
        response: { 200: RepositoryNames, ...awsErrors },
      },
    },
    async (request) => store.list(request.params.account),
  );

  app.post(
    '/v1/ecr/:account/repositories/:group',
    {
      schema: {
        summary: 'Create the repository {group}/{RepositoryName}, tagged with the org, group and name',
        params: GroupParams,
        body: CreateRepositoryBody,
        security,
        response: { 200: Repository, ...writeErrors },
      },
    },
    async (request) => {
      const { account, group } = request.params;
      const body = given(request.body);
      if (body.EncryptionType === 'AES256' && body.KmsKeyId) {
        throw badRequest('KmsKeyId needs EncryptionType KMS (or no EncryptionType).', [
          { field: 'body.KmsKeyId', message: 'is only allowed with EncryptionType KMS' },
        ]);
      }
      const kms = body.EncryptionType === 'KMS' || body.KmsKeyId !== undefined;
      return store.create(
        account,
        group,
        {
          name: body.RepositoryName,
          scanOnPush: body.ScanOnPush === undefined ? false : parseScanOnPush(body.ScanOnPush),
          imageTagMutability: body.ImageTagMutability ?? 'MUTABLE',
          encryption: kms ? { type: 'KMS', ...(body.KmsKeyId ? { kmsKey: body.KmsKeyId } : {}) } : { type: 'AES256' },
          tags: body.Tags,
          groups: body.Groups,
        },
        request.log,
      );
    },
  );

  app.get(
    '/v1/ecr/:account/repositories/:group',
    {
      schema: {
        summary: "List this org's repositories of one group (space)",
        params: GroupParams,
        security,
        response: { 200: RepositoryNames, ...awsErrors },
      },
    },
    async (request) => store.list(request.params.account, request.params.group),
  );

  app.get(
    '/v1/ecr/:account/repositories/:group/:name',
    {
      schema: {
        summary: 'Show a repository of this org and group',
        params: RepositoryParams,
        security,
        response: { 200: Repository, ...awsErrors },
      },
    },
    async (request) => {
      const { account, group, name } = request.params;
      return store.get(account, group, name);
    },
  );

  app.put(
    '/v1/ecr/:account/repositories/:group/:name',
    {
      schema: {
        summary:
          'Change ScanOnPush, the groups that may pull, and merge tags (Name, spinup:org and spinup:spaceid stay as they are); a failed change rolls back the earlier ones',
        params: RepositoryParams,
        body: UpdateRepositoryBody,
        security,
        response: { 200: Repository, ...writeErrors },
      },
    },
    async (request) => {
      const { account, group, name } = request.params;
      const body = given(request.body);
      return store.update(account, group, name, {
        ...(body.ScanOnPush !== undefined ? { scanOnPush: parseScanOnPush(body.ScanOnPush) } : {}),
        ...(body.Tags ? { tags: body.Tags } : {}),
        ...(body.Groups ? { groups: body.Groups } : {}),
      });
    },
  );

  app.delete(
    '/v1/ecr/:account/repositories/:group/:name',
    {
      schema: {
        summary: 'Delete a repository, all its images and its users; answers the deleted repository and users',
        params: RepositoryParams,
        security,
        response: { 200: DeletedRepository, ...awsErrors },
      },
    },
    async (request) => {
      const { account, group, name } = request.params;
      return store.delete(account, group, name);
    },
  );

  app.get(
    '/v1/ecr/:account/repositories/:group/:name/images',
    {
      schema: {
        summary: 'List every image of a repository',
        params: RepositoryParams,
        security,
        response: { 200: Type.Array(Image), ...awsErrors },
      },
    },
    async (request) => {
      const { account, group, name } = request.params;
      return store.images(account, group, name);
    },
  );
}
