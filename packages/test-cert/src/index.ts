// Self-signed certificates for the tests and the bench, made with the openssl CLI.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

/**
 * A self-signed P-256 certificate for localhost and 127.0.0.1, valid for one day, written without a
 * passphrase as `<dir>/<name>.crt` and `<dir>/<name>.key` (name `tls` and CN `localhost` by default).
 * Throws when openssl is missing or fails.
 */
export function selfSignedCertificate(dir: string, opts: { name?: string; cn?: string } = {}): { certfile: string; keyfile: string } {
  const name = opts.name ?? 'tls';
  const certfile = path.join(dir, `${name}.crt`);
  const keyfile = path.join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${opts.cn ?? 'localhost'}`,
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      keyfile,
      '-out',
      certfile,
    ],
    { stdio: 'ignore' },
  );
  return { certfile, keyfile };
}
