// The child side of runScript (procs.js): a script that never outlives the bench, reads its spec
// as JSON on stdin, and only ever loads this machine.
import { exitWithParent } from './orphan.js';

/** The spec runScript sent; `what` names the script in the error if its `url` is not 127.0.0.1. */
export async function readSpec(what) {
  exitWithParent();
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const spec = JSON.parse(input);
  const url = new URL(spec.url);
  if (url.hostname !== '127.0.0.1') throw new Error(`${what} only against 127.0.0.1, not ${url.host}`);
  return spec;
}
