// Certificates for the tests and the bench, made with the openssl CLI: self-signed, or a CA and
// certificates it signs.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface CertificateFiles {
  certfile: string;
  keyfile: string;
}

/** A self-signed P-256 certificate with these extensions, valid for one day, as `<dir>/<name>.crt` and `.key`. */
function selfSigned(dir: string, name: string, cn: string, extensions: string[]): CertificateFiles {
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
      `/CN=${cn}`,
      ...extensions.flatMap((extension) => ['-addext', extension]),
      '-keyout',
      keyfile,
      '-out',
      certfile,
    ],
    { stdio: 'ignore' },
  );
  return { certfile, keyfile };
}

/**
 * A self-signed P-256 certificate for localhost and 127.0.0.1, valid for one day, written without a
 * passphrase as `<dir>/<name>.crt` and `<dir>/<name>.key` (name `tls` and CN `localhost` by default).
 * Throws when openssl is missing or fails.
 */
export function selfSignedCertificate(dir: string, opts: { name?: string; cn?: string } = {}): CertificateFiles {
  return selfSigned(dir, opts.name ?? 'tls', opts.cn ?? 'localhost', ['subjectAltName=DNS:localhost,IP:127.0.0.1']);
}

/**
 * A P-256 certificate authority (CA:TRUE, may sign certificates), valid for one day, written as
 * `<dir>/<name>.crt` and `<dir>/<name>.key` (name `ca` by default), for `issuedCertificate`.
 */
export function certificateAuthority(dir: string, opts: { name?: string; cn?: string } = {}): CertificateFiles {
  return selfSigned(dir, opts.name ?? 'ca', opts.cn ?? 'Test CA', [
    'basicConstraints=critical,CA:TRUE',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

/**
 * A P-256 server certificate signed by `ca` (not a CA itself), valid for one day, for the names
 * in `altNames` only (`DNS:host` or `IP:address`; default `DNS:localhost`, `IP:127.0.0.1`), written
 * as `<dir>/<name>.crt` and `<dir>/<name>.key`.
 */
export function issuedCertificate(
  dir: string,
  ca: CertificateFiles,
  opts: { name?: string; cn?: string; altNames?: string[] } = {},
): CertificateFiles {
  const name = opts.name ?? 'server';
  const certfile = path.join(dir, `${name}.crt`);
  const keyfile = path.join(dir, `${name}.key`);
  const request = path.join(dir, `${name}.csr`);
  const extensions = path.join(dir, `${name}.ext`);
  writeFileSync(
    extensions,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=${(opts.altNames ?? ['DNS:localhost', 'IP:127.0.0.1']).join(',')}`,
      '',
    ].join('\n'),
  );
  execFileSync(
    'openssl',
    [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      `/CN=${opts.cn ?? 'localhost'}`,
      '-keyout',
      keyfile,
      '-out',
      request,
    ],
    { stdio: 'ignore' },
  );
  execFileSync(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      request,
      '-CA',
      ca.certfile,
      '-CAkey',
      ca.keyfile,
      '-set_serial',
      `0x${randomBytes(8).toString('hex')}`,
      '-days',
      '1',
      '-extfile',
      extensions,
      '-out',
      certfile,
    ],
    { stdio: 'ignore' },
  );
  rmSync(request);
  rmSync(extensions);
  return { certfile, keyfile };
}
