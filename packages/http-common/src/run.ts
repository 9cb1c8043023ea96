import closeWithGrace from 'close-with-grace';
import type { FastifyInstance } from 'fastify';

/**
 * Listens, and on SIGTERM/SIGINT stops taking new connections, lets in-flight requests finish,
 * runs the app's onClose hooks (database pools, watchers) and exits; a second signal or the
 * grace delay forces the exit.
 */
export async function listenWithGrace(
  app: FastifyInstance,
  where: { host: string; port: number },
  opts: { graceMs?: number } = {},
): Promise<void> {
  const grace = closeWithGrace({ delay: opts.graceMs ?? 10_000, logger: app.log }, async ({ err, signal }) => {
    if (err) app.log.error({ err }, 'closing after a fatal error');
    else app.log.info({ signal }, 'shutting down');
    await app.close();
  });
  app.addHook('onClose', async () => grace.uninstall());
  await app.listen(where);
}
