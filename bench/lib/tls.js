// The bench serves HTTPS as the Deployment does: one self-signed certificate for 127.0.0.1 per run,
// made with openssl (as the tests make theirs). The bench process trusts it through
// NODE_EXTRA_CA_CERTS, which Node reads only at start, so run.js starts itself again with it set.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * The run's certificate and key ({ certfile, keyfile }), made in a temporary directory;
 * undefined with BENCH_TLS=0 or without openssl (the bench then measures plain HTTP, and says so).
 */
export function makeBenchCertificate() {
  if (process.env.BENCH_TLS === '0') return undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-tls-'));
  const certfile = path.join(dir, 'cert.pem');
  const keyfile = path.join(dir, 'key.pem');
  try {
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
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        keyfile,
        '-out',
        certfile,
      ],
      { stdio: 'ignore' },
    );
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  return { dir, certfile, keyfile };
}

/** The certificate run.js made before it started itself again (BENCH_TLS_DIR), if any. */
export function benchCertificate() {
  const dir = process.env.BENCH_TLS_DIR;
  return dir ? { dir, certfile: path.join(dir, 'cert.pem'), keyfile: path.join(dir, 'key.pem') } : undefined;
}

/** http or https, as the bench serves. */
export const scheme = () => (benchCertificate() ? 'https' : 'http');
