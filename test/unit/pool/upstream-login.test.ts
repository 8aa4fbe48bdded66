// UpstreamLogin against a fake server: a login refused (28P01) while ops rotate the password
// waits for the credential cache to see the new secret. The pool measures time by its own clock
// (spanClock) and the cache by the wall clock, so what passes between them must be a span.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { TcpConnector } from '../../../src/backend/connector.ts';
import { CredentialCache } from '../../../src/credentials/cache.ts';
import type { CredentialProvider, Secret } from '../../../src/credentials/provider.ts';
import { FakeClock } from '../../../src/lib/clock.ts';
import { UpstreamLogin } from '../../../src/pool/upstream-login.ts';
import { FakeUpstream } from '../../support/fake-upstream.ts';

/** A rotating source (a mounted secret file, say) that ops rewrite: `password` is what it holds now. */
class RotatingSource implements CredentialProvider {
  readonly kind = 'rotating';
  readonly rotates = true;
  readonly token = false;
  password = 'before-rotation';

  async fetch(): Promise<Secret> {
    return { password: this.password };
  }
}

test('a login refused mid-rotation waits for the new secret, whatever the pool clock reads against the wall clock', async (t) => {
  let serverPassword = 'before-rotation';
  const fake = await FakeUpstream.start({
    scriptFor: () => async (connection) => {
      await connection.loginCleartext(serverPassword);
      if (connection.isClosed) return;
      connection.ready();
      await connection.nextQuery().catch(() => null);
    },
  });
  t.after(() => fake.close());
  const source = new RotatingSource();
  const cache = new CredentialCache(source, { rotationPollMs: 20 }); // the wall clock
  t.after(() => cache.close());
  // The pool's clock far from the wall clock, as spanClock is after a clock step or a suspend.
  const login = new UpstreamLogin({
    connector: new TcpConnector(),
    tls: () => ({ mode: 'disable' }),
    maxMessageSize: 1 << 20,
    credentials: cache,
    log: pino({ level: 'silent' }),
    clock: new FakeClock(0),
  });
  const target = { host: fake.host, port: fake.port };
  const as = { user: 'app', database: 'app' };

  (await login.connect(target, as, 5_000)).close(true); // the secret works: the cache marks it accepted

  // ALTER ROLE ran; the secret file is rewritten a moment later.
  serverPassword = 'after-rotation';
  const rewritten = setTimeout(() => (source.password = 'after-rotation'), 150);
  t.after(() => clearTimeout(rewritten));
  const connection = await login.connect(target, as, 5_000);
  connection.close(true);
  assert.equal(fake.sessions('app').length, 3, 'logged in, refused with the old secret, logged in with the new one');
  assert.equal(login.lastLogin.error, null);
});
