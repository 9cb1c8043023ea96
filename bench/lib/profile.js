// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by package, so the
// report says where a request's CPU goes. Usage alone: node bench/lib/profile.js file.cpuprofile
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Where a script lives: "fastify", "pino", "imagelist", "node:internal", … */
function owner(url) {
  if (!url) return '(native/vm)';
  const path = url.replace(/^file:\/\//, '');
  const pkg = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (pkg) return pkg[1];
  if (path.startsWith('node:')) return path.startsWith('node:internal') ? 'node:internal' : path;
  const ws = /(services|packages)\/([^/]+)\//.exec(path);
  if (ws) return ws[2];
  return path.replace(root, '');
}

/** The profile, and when each sample was taken (µs, CLOCK_MONOTONIC, as process.hrtime). */
function read(file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const at = new Float64Array(profile.samples.length);
  let t = profile.startTime;
  for (let i = 0; i < at.length; i++) at[i] = t += profile.timeDeltas[i] ?? 0;
  return { profile, at };
}

/** Self time by package and by function of the samples in [fromUs, toUs). */
function window({ profile, at }, fromUs = -Infinity, toUs = Infinity, top = 15) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  // sample i ran for timeDeltas[i + 1] µs (until the next sample)
  for (let i = 0; i < profile.samples.length; i++) {
    if (at[i] < fromUs || at[i] >= toUs) continue;
    const us = profile.timeDeltas[i + 1] ?? 0;
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + us);
  }
  let busy = 0;
  let idle = 0;
  const fns = new Map();
  const owners = new Map();
  for (const [id, us] of self) {
    const { callFrame: cf } = byId.get(id);
    if (cf.functionName === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    const where = owner(cf.url);
    const fn = `${cf.functionName || '(anonymous)'} ${where}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
    fns.set(fn, (fns.get(fn) ?? 0) + us);
    owners.set(where, (owners.get(where) ?? 0) + us);
  }
  const rank = (m) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, pct: Math.round((1000 * us) / Math.max(1, busy)) / 10 }));
  return { busyMs: Math.round(busy / 1000), idleMs: Math.round(idle / 1000), byPackage: rank(owners), byFunction: rank(fns) };
}

/**
 * Summaries of one .cpuprofile: the whole of it, and each named window {name: [fromUs, toUs]}
 * (µs of process.hrtime, the clock V8 stamps its samples with).
 */
export function summarize(file, windows = {}, top = 15) {
  const p = read(file);
  return {
    file,
    whole: window(p, -Infinity, Infinity, top),
    windows: Object.fromEntries(Object.entries(windows).map(([name, [from, to]]) => [name, window(p, from, to, top)])),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const s = summarize(process.argv[2], {}, Number(process.argv[3] ?? 25)).whole;
  console.log(`busy ${s.busyMs} ms, idle ${s.idleMs} ms\nself time by package (% of busy):`);
  for (const r of s.byPackage) console.log(`  ${String(r.pct).padStart(5)}%  ${r.name}`);
  console.log('self time by function:');
  for (const r of s.byFunction) console.log(`  ${String(r.pct).padStart(5)}%  ${r.name}`);
}
