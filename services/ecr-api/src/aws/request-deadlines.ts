import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DeadlineGroup, ServiceClosing, withDeadline, type Deadline } from './deadline.js';

/**
 * How long the AWS calls of requests in flight may still run once the app begins to close (on
 * SIGTERM, after the 2 s drain): then they are aborted and their requests answered 503, any change
 * they made rolled back under UNDO_DEADLINE_MS (steps.ts). Without it a request would wait on AWS
 * for up to its whole deadline (25 s, up to 29), past the shutdown grace (server.ts): the process
 * was killed with the request unanswered and its change half-applied. 3 s: a healthy AWS call
 * answers in well under a second, so only calls to a hung AWS are cut.
 */
export const CLOSE_CUTOFF_MS = 3_000;

/**
 * Gives every request of `app` a deadline of `ms` from its arrival for the AWS calls it makes, and
 * ends them all CLOSE_CUTOFF_MS after the app begins to close. The deadline is entered in
 * preHandler, after the body is read, as the handler's async context; Fastify runs the handler
 * from within that callback.
 */
export function deadlinePerRequest(app: FastifyInstance, ms: number): void {
  const group = new DeadlineGroup();
  const deadlines = new WeakMap<FastifyRequest, Deadline>();
  let cutoff: NodeJS.Timeout | undefined;
  app.addHook('onRequest', (request, _reply, done) => {
    deadlines.set(request, group.deadline(ms));
    done();
  });
  app.addHook('preHandler', (request, _reply, done) => {
    const deadline = deadlines.get(request);
    if (deadline) withDeadline(deadline, done);
    else done();
  });
  app.addHook('onResponse', (request, _reply, done) => {
    deadlines.get(request)?.dispose();
    done();
  });
  // preClose runs when the close begins; onClose once every connection is gone.
  app.addHook('preClose', (done) => {
    cutoff = setTimeout(() => group.end(new ServiceClosing()), CLOSE_CUTOFF_MS).unref();
    done();
  });
  app.addHook('onClose', (_app, done) => {
    clearTimeout(cutoff);
    done();
  });
}
