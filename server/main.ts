// iopfd daemon entry point (the full app arrives with the server issue).
import Fastify from 'fastify';

const app = Fastify();
app.get('/healthz', async () => ({ status: 'ok' }));
const port = Number(process.env['IOPFD_PORT'] ?? 8080);
const host = process.env['IOPFD_HOST'] ?? '127.0.0.1';
await app.listen({ port, host });
const addr = app.server.address();
console.log(`iopfd listening on http://${host}:${typeof addr === 'object' && addr ? addr.port : port}`);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void app.close().then(() => process.exit(0)));
