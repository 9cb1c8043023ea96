import { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify';

/**
 * What Fastify logs about each request, by what an operator needs at each level. Its default is
 * two `info` lines per request: an admission webhook answers for every pod of a cluster, and
 * those lines halved its throughput while saying nothing an operator acts on.
 * - `info`: no line for a request that went well and fast; a request slower than `slowMs` at
 *   `warn`. Errors are logged by the error handler, and routes log their own decisions (an
 *   admission denial, a write).
 * - `debug`: every request, once, when its answer has been sent.
 *
 * Fastify calls requestCompleted once for every response (the app always has a logger, if only
 * a silent one), so the rest of the per-response work, `completed` (the latency metric, and
 * closing the connection while the server closes), is done here too: an onResponse hook would
 * cost a hook-runner pass per request, and the two we had cost ~10% of an admission review.
 */
export class AccessLog extends LogController {
  constructor(
    private readonly slowMs: number,
    private readonly completed: (request: FastifyRequest, reply: FastifyReply) => void,
  ) {
    super();
  }

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const responseTime = reply.elapsedTime;
    this.completed(request, reply);
    if (error) reply.log.error({ req: request, res: reply, err: error, responseTime }, 'request errored');
    else logAnswered(reply.log, this.slowMs, { req: request, res: reply, responseTime });
  }
}

/** The line of a request answered without error, Fastify's or a direct route's: `warn` if slow, else `debug`. */
export function logAnswered(log: FastifyBaseLogger, slowMs: number, line: { req: unknown; res: unknown; responseTime: number }): void {
  if (line.responseTime >= slowMs) log.warn(line, 'slow request');
  else log.debug(line, 'request completed');
}
