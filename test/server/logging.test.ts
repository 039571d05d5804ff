// Tokens never reach a log line, whatever the level.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../server/logger.js';
import { faultFixture, inject, refusedUpgrade, startServer, StreamClient } from './helpers.js';

test('logging: tokens are never logged (headers redacted, query strings dropped)', async () => {
  const lines: string[] = [];
  const logger = createLogger('trace', { write: (line: string) => void lines.push(line) });
  const server = await startServer({ logger, adminToken: 'admin-secret-token' });
  const admin = server.api.withToken('admin-secret-token');
  const fx = await faultFixture({ api: admin }, { device: 'nic0' });
  const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token, tokenInQuery: true });
  await s.json();
  await inject(admin, 'nic0', { grpid: 1, addr: 0x1000n });
  await s.json();
  await refusedUpgrade(server.wsBase, `${fx.stream}?token=${fx.token}x`);
  await server.api.withToken('wrong-admin-guess').get('/v1/platform');
  await server.api.get(`/v1/nothing?token=${fx.token}`);
  await s.close();
  await server.close();
  const all = lines.join('');
  assert.ok(lines.length > 10, 'requests and streams were logged at trace level');
  assert.match(all, /"ctx":\d+/, 'child loggers carry the context');
  assert.match(all, /"stream":\d+/, 'and the stream');
  for (const secret of [fx.token, 'admin-secret-token', 'wrong-admin-guess']) assert.ok(!all.includes(secret), `${secret} leaked`);
  assert.ok(!/[?&]token=/.test(all), 'no query string in a logged URL');
});
