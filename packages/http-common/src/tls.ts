import type { FastifyBaseLogger } from 'fastify';
import { readFileSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import { watchFile } from './watch-file.js';

export interface TlsFiles {
  certfile: string;
  keyfile: string;
}

export function readTls(files: TlsFiles): { cert: Buffer; key: Buffer } {
  const pair = { cert: readFileSync(files.certfile), key: readFileSync(files.keyfile) };
  createSecureContext(pair); // throws when the key does not match the certificate
  return pair;
}

/**
 * Reloads the serving certificate when either file changes (cert-manager rotation, Secret update)
 * without a restart. A half-written or mismatched pair keeps the previous one in service.
 */
export async function reloadTlsOnChange(server: HttpsServer, files: TlsFiles, log: FastifyBaseLogger) {
  const reload = () => {
    try {
      server.setSecureContext(readTls(files));
      log.info({ certfile: files.certfile }, 'TLS certificate reloaded');
    } catch (err) {
      log.error({ err, certfile: files.certfile }, 'TLS certificate reload failed; keeping the previous one');
    }
  };
  const watchers = await Promise.all([watchFile(files.certfile, reload, 200), watchFile(files.keyfile, reload, 200)]);
  return { close: () => Promise.all(watchers.map((w) => w.close())).then(() => undefined) };
}
