import type { TokenStore } from '@platform/auth';
import type { Sql } from 'postgres';
import { buildApp } from '../../src/app.js';

export const DIGEST_A = 'b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c';
export const DIGEST_B = '89562e2c3c4f29abd7e7a3586908f147ee0abeabbf9c07582daf632872b8ac0a';
export const DIGEST_C = 'f569d31fa5e46509fe0235f5bc1344fc96c8c142455056c3e02c43dea70f05eb';

export function testApp(sql: Sql, tokens?: TokenStore) {
  return buildApp({ sql, logger: false, defaultMetrics: false, ...(tokens ? { tokens } : {}) });
}
