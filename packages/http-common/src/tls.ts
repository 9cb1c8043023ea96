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

/** How often a pair that could not be loaded is loaded again, until it can be (watchFile's retryMs). */
const RETRY_MS = 1000;

/**
 * Reloads the serving certificate when either file changes (cert-manager rotation, Secret update)
 * without a restart. A pair that cannot be read, half-written or mismatched keeps the previous one
 * in service, and is tried again every RETRY_MS until it loads or a change brings another: a read
 * that failed changes neither file, and the rotated certificate was never served.
 */
export async function reloadTlsOnChange(server: HttpsServer, files: TlsFiles, log: FastifyBaseLogger) {
  /** The failure logged since the last change: each retry that fails the same way is not logged again. */
  let logged: string | undefined;
  const reload = (retrying: boolean): boolean => {
    if (!retrying) logged = undefined;
    try {
      server.setSecureContext(readTls(files));
      logged = undefined;
      log.info({ certfile: files.certfile }, 'TLS certificate reloaded');
      return true;
    } catch (err) {
      if ((err as Error).message !== logged) {
        logged = (err as Error).message;
        log.error({ err, certfile: files.certfile }, 'TLS certificate reload failed; keeping the previous one');
      }
      return false;
    }
  };
  // Each file: a new key alone must be seen too. One reload for both (a Secret update changes
  // both); a pair read half-updated does not match, and keeps the previous pair until the other
  // file's change reloads it.
  return watchFile([files.certfile, files.keyfile], reload, { debounceMs: 200, retryMs: RETRY_MS });
}
