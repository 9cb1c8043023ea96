import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

/** Admission reviews as a kube-apiserver sent them (`test/admission/fixtures`), by file name. */
const FIXTURES = path.join(import.meta.dirname, '..', 'admission', 'fixtures');

/** A fresh copy of the fixture `name` (`pod`, `deployment`, `imagereview`, ...). */
export const fixture = async (name: string): Promise<any> => JSON.parse(await readFile(path.join(FIXTURES, `${name}.json`), 'utf8'));

/** The names of the AdmissionReview fixtures, one per workload kind. */
export const workloadFixtures = async (): Promise<string[]> =>
  (await readdir(FIXTURES)).filter((f) => f !== 'imagereview.json').map((f) => f.replace(/\.json$/, ''));

/** The digest the fixtures' `ghcr.io/shop/proxy@sha256:...` names. */
export const PROXY_DIGEST = '89562e2c3c4f29abd7e7a3586908f147ee0abeabbf9c07582daf632872b8ac0a';
/** The digests the tests list `quay.io/shop/web` and `busybox` (named by tag in the fixtures) under. */
export const WEB_DIGEST = 'b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c';
export const BUSYBOX_DIGEST = 'f569d31fa5e46509fe0235f5bc1344fc96c8c142455056c3e02c43dea70f05eb';
