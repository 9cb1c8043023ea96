// The bench serves HTTPS as the Deployment does: one self-signed certificate for 127.0.0.1 per run,
// made with openssl by @platform/test-cert (as the tests make theirs). The bench process trusts it
// through NODE_EXTRA_CA_CERTS, which Node reads only at start, so run.js starts itself again with it set.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { selfSignedCertificate } from '@platform/test-cert';

/** The files' name in the run's directory: tls.crt and tls.key. */
const NAME = 'tls';

/**
 * The run's certificate and key ({ dir, certfile, keyfile }), made in a temporary directory;
 * undefined with BENCH_TLS=0 or without openssl (the bench then measures plain HTTP, and says so).
 */
export function makeBenchCertificate() {
  if (process.env.BENCH_TLS === '0') return undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-tls-'));
  try {
    return { dir, ...selfSignedCertificate(dir, { name: NAME, cn: '127.0.0.1' }) };
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
}

/** The certificate run.js made before it started itself again (BENCH_TLS_DIR), if any. */
export function benchCertificate() {
  const dir = process.env.BENCH_TLS_DIR;
  return dir ? { dir, certfile: path.join(dir, `${NAME}.crt`), keyfile: path.join(dir, `${NAME}.key`) } : undefined;
}

/** http or https, as the bench serves. */
export const scheme = () => (benchCertificate() ? 'https' : 'http');
