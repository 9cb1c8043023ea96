import { execFileSync } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';

/** A self-signed certificate for 127.0.0.1 and localhost, written as `<name>.crt` and `<name>.key`. */
export function makeCert(dir: string, name: string, cn: string): { certfile: string; keyfile: string } {
  const certfile = path.join(dir, `${name}.crt`);
  const keyfile = path.join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1'],
      ...['-subj', `/CN=${cn}`, '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyfile, '-out', certfile],
    ],
    { stdio: 'ignore' },
  );
  return { certfile, keyfile };
}

export interface HttpsAnswer {
  status: number;
  body: string;
  /** CN of the certificate the server presented. */
  cn: string;
}

/** One HTTPS GET to 127.0.0.1 (self-signed certificates accepted). */
export function httpsGet(port: number, urlPath: string, headers: Record<string, string> = {}): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: urlPath, rejectUnauthorized: false, agent: false, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString('utf8')));
      res.on('end', () => {
        const cert = (res.socket as TLSSocket).getPeerCertificate();
        resolve({ status: res.statusCode ?? 0, body, cn: String(cert.subject.CN) });
      });
    });
    req.on('error', reject);
    req.end();
  });
}
