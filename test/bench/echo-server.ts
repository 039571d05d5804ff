/**
 * The baselines' server: a bare `ws` echo server, run by the bench in its
 * own child process (`node dist/test/bench/echo-server.js`). It sends every
 * message back as it came (text as text, binary as binary), with the same
 * settings as the daemon's stream (no compression), and prints one line on
 * stdout when listening: `echo listening on PORT`.
 */
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, clientTracking: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});
wss.on('listening', () => {
  process.stdout.write(`echo listening on ${(wss.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
