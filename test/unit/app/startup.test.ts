// startAmbassador when a later part cannot be built: the error is the part's own (a ConfigError
// naming the key), and what was started before it is stopped.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { startAmbassador } from '../../../src/app.ts';
import { parseConfigText } from '../../../src/config/index.ts';
import { ConfigError } from '../../../src/errors.ts';

test('an unreadable listener certificate fails startup with its ConfigError, not a cleanup error', async () => {
  const config = parseConfigText(
    [
      'listen: { host: 127.0.0.1, port: 0, tls: { cert: /nonexistent/dir/server.crt, key: /nonexistent/dir/server.key } }',
      'upstream: { hosts: [ { host: 127.0.0.1, port: 1 } ], credentials: { type: password, password: not-used } }',
      'admin: { port: 0 }',
    ].join('\n'),
    { env: {} },
  );
  await assert.rejects(startAmbassador(config, { logger: pino({ level: 'silent' }), env: {} }), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `a ConfigError, got ${String(err)}`);
    assert.match((err as Error).message, /server\.crt|listen\.tls/);
    return true;
  });
});
