// The baseline: Fastify's hello world, no logger, in the same Node and the same Fastify as imagelist.
// Usage: node bench/lib/hello.js <port>
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../services/imagelist/package.json', import.meta.url));
const Fastify = require('fastify');

// Never outlive the bench that started us.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(3);
}, 1000).unref();

const app = Fastify();
app.get('/', async () => ({ hello: 'world' }));
// A clean exit on SIGTERM, so `node --cpu-prof` writes its profile.
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
await app.listen({ host: '127.0.0.1', port: Number(process.argv[2]) });
process.stdout.write(`listening fastify ${app.version}\n`);
