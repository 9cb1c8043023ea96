import { Writable } from 'node:stream';

/** A stream to give a pino logger, the JSON lines written to it so far, and a way to forget them. */
export function collectLogLines() {
  const out: string[] = [];
  return {
    stream: new Writable({ write: (chunk, _enc, done) => (out.push(String(chunk)), done()) }),
    lines: (): any[] =>
      out
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
    clear: () => {
      out.length = 0;
    },
  };
}
