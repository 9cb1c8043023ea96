import type { App } from '@platform/http-common';
import type { onRequestAsyncHookHandler } from 'fastify';
import Type from 'typebox';
import type { ImageStore } from '../aws/images.js';
import { awsErrors } from '../schemas/common.js';
import { DeletedImageTag, ImageTag, ImageWithFindings } from '../schemas/image.js';
import { AccountId, GroupName, RepositoryShortName } from '../schemas/repository.js';

const ImageParams = Type.Object({ account: AccountId, group: GroupName, name: RepositoryShortName, tag: ImageTag });
const security = [{ xAuthToken: [] }];

export async function imageRoutes(app: App, opts: { images: ImageStore; authorize: onRequestAsyncHookHandler }): Promise<void> {
  const { images } = opts;
  app.addHook('onRequest', opts.authorize);

  app.get(
    '/v1/ecr/:account/repositories/:group/:name/images/:tag',
    {
      schema: {
        summary: 'One image by tag, with its scan findings (scanError instead when they cannot be read)',
        params: ImageParams,
        security,
        response: { 200: ImageWithFindings, ...awsErrors },
      },
    },
    async (request) => {
      const { account, group, name, tag } = request.params;
      return images.byTag(account, group, name, tag);
    },
  );

  app.delete(
    '/v1/ecr/:account/repositories/:group/:name/images/:tag',
    {
      schema: {
        summary: 'Delete an image tag (the image goes when no other tag refers to it); 404 for a tag that does not exist',
        params: ImageParams,
        security,
        response: { 200: DeletedImageTag, ...awsErrors },
      },
    },
    async (request) => {
      const { account, group, name, tag } = request.params;
      return images.deleteTag(account, group, name, tag);
    },
  );
}
