import type { App } from '@platform/http-common';
import type { onRequestAsyncHookHandler } from 'fastify';
import type { RepositoryUsers } from '../aws/users.js';
import { awsErrors, given, Problem } from '../schemas/common.js';
import { RepositoryParams } from '../schemas/repository.js';
import { CreateUserBody, DeletedUser, UpdatedUser, UpdateUserBody, User, UserNames, UserParams } from '../schemas/user.js';

const security = [{ xAuthToken: [] }];
const writeErrors = { ...awsErrors, 413: Problem, 415: Problem };

export async function userRoutes(app: App, opts: { users: RepositoryUsers; authorize: onRequestAsyncHookHandler }): Promise<void> {
  const { users } = opts;
  app.addHook('onRequest', opts.authorize);

  app.get(
    '/v1/ecr/:account/repositories/:group/:name/users',
    {
      schema: {
        summary: 'The IAM users that may push to and pull from the repository',
        params: RepositoryParams,
        security,
        response: { 200: UserNames, ...awsErrors },
      },
    },
    async (request) => {
      const { account, group, name } = request.params;
      return users.list(account, group, name);
    },
  );

  app.post(
    '/v1/ecr/:account/repositories/:group/:name/users',
    {
      schema: {
        summary: 'Create an IAM user "{name}-{UserName}" that may push to and pull from this repository only (no key yet: PUT ResetKey)',
        params: RepositoryParams,
        body: CreateUserBody,
        security,
        response: { 200: User, ...writeErrors },
      },
    },
    async (request) => {
      const { account, group, name } = request.params;
      const body = given(request.body);
      return users.create(account, group, name, { user: body.UserName, tags: body.Tags });
    },
  );

  app.get(
    '/v1/ecr/:account/repositories/:group/:name/users/:user',
    {
      schema: {
        summary: 'A repository user: its access keys (no secrets), groups and tags',
        params: UserParams,
        security,
        response: { 200: User, ...awsErrors },
      },
    },
    async (request) => {
      const { account, group, name, user } = request.params;
      return users.get(account, group, name, user);
    },
  );

  app.put(
    '/v1/ecr/:account/repositories/:group/:name/users/:user',
    {
      schema: {
        summary: 'Merge tags and, with ResetKey, issue a new access key (its secret is answered once) and delete the old ones',
        params: UserParams,
        body: UpdateUserBody,
        security,
        response: { 200: UpdatedUser, ...writeErrors },
      },
    },
    async (request) => {
      const { account, group, name, user } = request.params;
      const body = given(request.body);
      return users.update(account, group, name, user, { resetKey: body.ResetKey ?? false, tags: body.Tags });
    },
  );

  app.delete(
    '/v1/ecr/:account/repositories/:group/:name/users/:user',
    {
      schema: {
        summary: 'Delete a repository user: its group memberships, access keys and the user',
        params: UserParams,
        security,
        response: { 200: DeletedUser, ...awsErrors },
      },
    },
    async (request) => {
      const { account, group, name, user } = request.params;
      return users.delete(account, group, name, user);
    },
  );
}
