import type { App } from '@platform/http-common';
import { unavailable } from '@platform/http-common';
import Type from 'typebox';
import { Problem } from '../schemas/image.js';
import type { ImageStore } from '../store/images.js';
import type { LiveIndex } from '../store/live-index.js';
import type { LookupProbe } from '../store/lookup-probe.js';

// No body at all, as the original answers (a `null` schema made Fastify send the 4 bytes `null`).
const Empty = Type.Unsafe<undefined>({ description: 'empty body' });

export async function healthRoutes(app: App, opts: { store: ImageStore; live?: LiveIndex; lookup: LookupProbe }): Promise<void> {
  const pingDatabase = async () => {
    try {
      await opts.store.ping();
    } catch (err) {
      throw unavailable('The database is unavailable.', err);
    }
  };

  // Readiness: the original's route, which checks the database.
  app.get(
    '/health/ping',
    {
      schema: { summary: 'Ready: the database answers', response: { 200: Empty, 503: Problem } },
      logLevel: 'warn',
    },
    async (_request, reply) => {
      await pingDatabase();
      return reply.code(200).send();
    },
  );

  // Readiness for the Service: this replica can answer admission, from memory (also from the last
  // exact state during a database outage, within its grace) or from the database. A database
  // outage alone must not take every replica out of the Service: that would stop every deploy.
  // From the database, a lookup, not a ping, must answer: a ping answers while the table is locked.
  app.get(
    '/health/ready',
    {
      schema: {
        summary: 'Ready: admission can be answered (from memory, or by a lookup in the database within --db-timeout)',
        response: { 200: Empty, 503: Problem },
      },
      logLevel: 'warn',
    },
    async (_request, reply) => {
      const source = opts.live?.source() ?? 'database';
      if (source === 'unavailable') throw unavailable('The database is unreachable and the in-memory allowlist is too old to answer from.');
      if (source === 'database') {
        const refused = await opts.lookup.check();
        if (refused) throw unavailable(refused.reason, refused.cause);
      }
      return reply.code(200).send();
    },
  );

  // Liveness: the process serves HTTP; a database outage must not restart every replica.
  app.get(
    '/health/live',
    {
      schema: { summary: 'Alive: the process serves requests', response: { 200: Empty } },
      logLevel: 'warn',
    },
    async (_request, reply) => reply.code(200).send(),
  );
}
