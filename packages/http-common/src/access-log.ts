import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';

/**
 * What Fastify logs about each request, by what an operator needs at each level. Its default is
 * two `info` lines per request: an admission webhook answers for every pod of a cluster, and
 * those lines halved its throughput while saying nothing an operator acts on.
 * - `info`: no line for a request that went well and fast; a request slower than `slowMs` at
 *   `warn`. Errors are logged by the error handler, and routes log their own decisions (an
 *   admission denial, a write).
 * - `debug`: every request, once, when its answer has been sent.
 */
export class AccessLog extends LogController {
  constructor(private readonly slowMs: number) {
    super();
  }

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const responseTime = reply.elapsedTime;
    if (error) {
      reply.log.error({ req: request, res: reply, err: error, responseTime }, 'request errored');
    } else if (responseTime >= this.slowMs) {
      reply.log.warn({ req: request, res: reply, responseTime }, 'slow request');
    } else {
      reply.log.debug({ req: request, res: reply, responseTime }, 'request completed');
    }
  }
}
