import { ConfigError } from '@platform/http-common';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';

/** Where imagelist connects to PostgreSQL: a URL for postgres.js, and how to check the server's certificate. */
export interface DatabaseTarget {
  url: string;
  /**
   * postgres.js's `ssl` option (tls.connect options), which takes precedence over the URL's
   * sslmode; unset: the URL's sslmode as postgres.js reads it.
   */
  ssl?: ConnectionOptions;
}

/** The sslmode values libpq knows; postgres.js reads the same names. */
const SSLMODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

/**
 * The URL's libpq `sslrootcert`, which postgres.js 3 does not support, made into tls.connect options.
 *
 * postgres.js reads `sslmode` (require, verify-full: Node's built-in CA list) and of `sslrootcert`
 * only `system`, and sends every query parameter it does not know, sslrootcert included, to the
 * server as a run-time parameter, which the server refuses (FATAL 42704, unrecognized
 * configuration parameter). So a URL with `sslrootcert` is taken apart here, once, at start:
 *
 * - `sslrootcert=<file>`: the server's certificate must chain to a certificate in that PEM file
 *   (a bundle may hold several). With `sslmode=verify-full` its name must match the host too; with
 *   `verify-ca` it need not. As in libpq, a root certificate makes `require` (and `prefer`,
 *   `allow`, or no sslmode) check the CA as `verify-ca` does; unlike libpq's `prefer` and `allow`,
 *   a server without TLS is then refused rather than used unencrypted.
 * - `sslrootcert=system`: Node's built-in CA list, and the host name, as postgres.js does.
 *
 * Both with `sslmode=disable` contradict each other, and a file that cannot be read or holds no
 * certificate stops the start: a ConfigError naming it, never a connection without verification.
 * A URL without sslrootcert is left to postgres.js as it is.
 */
export function databaseTarget(url: string): DatabaseTarget {
  const queryAt = url.indexOf('?');
  if (queryAt < 0) return { url };
  const hashAt = url.indexOf('#', queryAt);
  const end = hashAt < 0 ? url.length : hashAt;
  const params = new URLSearchParams(url.slice(queryAt + 1, end));
  // postgres.js takes the last of a parameter given twice
  const rootcert = params.getAll('sslrootcert').at(-1);
  if (rootcert === undefined) return { url };

  const sslmode = params.getAll('sslmode').at(-1);
  if (sslmode !== undefined && !SSLMODES.includes(sslmode)) {
    throw new ConfigError(`database URL: sslmode "${sslmode}" is not one of ${SSLMODES.join(', ')}`);
  }
  if (sslmode === 'disable') {
    throw new ConfigError(`database URL: sslrootcert=${rootcert} asks for a verified TLS connection, but sslmode=disable for none`);
  }
  params.delete('sslrootcert');
  params.delete('sslmode');
  const rest = params.toString();
  const stripped = url.slice(0, queryAt) + (rest ? `?${rest}` : '') + url.slice(end);

  if (rootcert === 'system') return { url: stripped, ssl: { rejectUnauthorized: true } };
  const ca = readRootCertificates(rootcert);
  return {
    url: stripped,
    ssl:
      sslmode === 'verify-full'
        ? { ca, rejectUnauthorized: true }
        : // verify-ca: the chain to `ca` is checked, the name on the certificate is not
          { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined },
  };
}

/** The PEM certificates of `file`; Node's TLS silently ignores anything else given as `ca`. */
function readRootCertificates(file: string): string {
  if (!file) throw new ConfigError('database URL: sslrootcert is empty (a PEM file of CA certificates, or "system")');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `database sslrootcert ${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  const pems = text.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) throw new ConfigError(`database sslrootcert ${file}: holds no PEM certificate`);
  for (const [i, pem] of pems.entries()) {
    try {
      new X509Certificate(pem);
    } catch (err) {
      throw new ConfigError(`database sslrootcert ${file}: certificate ${i + 1} is not valid (${(err as Error).message})`);
    }
  }
  return pems.join('\n');
}
