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
  // Each file: a new key alone must be seen too. One reload for both (a Secret update changes
  // both); a pair read half-updated does not match, and keeps the previous pair until the other
  // file's change reloads it.
  return watchFile([files.certfile, files.keyfile], reload, { debounceMs: 200 });
}
