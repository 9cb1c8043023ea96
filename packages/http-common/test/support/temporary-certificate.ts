import { selfSignedCertificate } from '@platform/test-cert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { TlsFiles } from '../../src/index.js';

/**
 * A self-signed certificate in a temporary directory, made before the calling file's tests and
 * removed after them; the function returned gives its files.
 */
export function temporaryCertificate(prefix: string): () => TlsFiles {
  let dir: string;
  let certs: TlsFiles | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), prefix));
    certs = selfSignedCertificate(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return () => {
    if (!certs) throw new Error('the certificate is made before the tests run');
    return certs;
  };
}
