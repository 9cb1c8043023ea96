import type { FastifyBaseLogger } from 'fastify';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Server as HttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import { watchFile } from './watch-file.js';

export interface TlsFiles {
  certfile: string;
  keyfile: string;
}

export function readTls(files: TlsFiles): { cert: Buffer; key: Buffer } {
  try {
    const pair = { cert: readFileSync(files.certfile), key: readFileSync(files.keyfile) };
    createSecureContext(pair); // throws when the key does not match the certificate
    return pair;
  } catch (err) {
    // OpenSSL's messages ("PEM routines::no start line") name no file
    throw new Error(`TLS certificate ${files.certfile} with key ${files.keyfile}: ${(err as Error).message}`, { cause: err });
  }
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
  // One watch per directory: cert and key usually sit side by side (a Kubernetes TLS Secret).
  const byDir = new Map([files.certfile, files.keyfile].map((f) => [path.dirname(path.resolve(f)), f]));
  const watchers = await Promise.all([...byDir.values()].map((f) => watchFile(f, reload, { debounceMs: 200 })));
  return { close: () => Promise.all(watchers.map((w) => w.close())).then(() => undefined) };
}
