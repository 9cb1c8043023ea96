import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';

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
