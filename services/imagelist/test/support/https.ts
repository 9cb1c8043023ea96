import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface HttpsResponse {
  status: number;
  body: string;
  /** CN of the certificate the server presented. */
  cn: string;
  json<T = any>(): T;
}

/** One HTTPS request to 127.0.0.1 (self-signed certificates accepted). */
export function httpsFetch(port: number, opts: { method?: string; path: string; body?: unknown; token?: string }): Promise<HttpsResponse> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path,
        rejectUnauthorized: false,
        agent: false,
        headers: {
          ...(payload ? { 'content-type': 'application/json' } : {}),
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        },
      },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          const cert = (res.socket as TLSSocket).getPeerCertificate();
          resolve({ status: res.statusCode ?? 0, body, cn: String(cert.subject?.CN), json: () => JSON.parse(body) });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
