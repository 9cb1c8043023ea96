// The baseline: Fastify's hello world, as plain as it gets, in the same Node and Fastify version.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../services/imagelist/package.json', import.meta.url));
const Fastify = require('fastify');
const app = Fastify();
app.get('/', async () => ({ hello: 'world' }));
await app.listen({ host: '127.0.0.1', port: Number(process.argv[2]) });
process.stdout.write('listening\n');
