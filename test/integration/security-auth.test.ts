// Authentication edges of the security review: an expired upstream password (VALID UNTIL in the
// past) gives its client a clear error while the ambassador goes on serving everyone else; SCRAM
// channel binding toward clients (SCRAM-SHA-256-PLUS offered on TLS only; a 'p' claim on a plain
// connection, a 'y' downgrade and a foreign certificate's binding data refused); a listener
// certificate channel binding cannot use still serves SCRAM.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import pg from 'pg';
import { AuthCode, decodeAuthentication, decodeErrorFields } from '../../src/protocol/backend.ts';
import { ALL_TYPES, Framer } from '../../src/protocol/framer.ts';
import { encodeSASLInitialResponse, encodeSASLResponse } from '../../src/protocol/frontend.ts';
import { certificateChannelBindingHash, ScramClient } from '../../src/protocol/scram.ts';
import { encodeSslRequest, encodeStartupMessage } from '../../src/protocol/startup.ts';
import { ambassadorsFor, CLIENT_PASSWORD, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { assertStillServes } from '../support/hostile.ts';
import { dropRoles, superuserConfig } from '../support/pooling.ts';
import { captureOutput, TEST_SECRETS } from '../support/secrets.ts';
import { getTopology, type Topology } from '../support/topology.ts';

const run = promisify(execFile);
let topology: Topology;
let superuser: pg.Client;
const ambassadors = ambassadorsFor(() => topology);
const roles: string[] = [];
const dirs: string[] = [];

before(async () => {
  topology = await getTopology();
  superuser = new pg.Client(superuserConfig(topology));
  await superuser.connect();
});
after(async () => {
  await ambassadors.stopAll();
  if (superuser) await dropRoles(superuser, roles);
  await superuser?.end().catch(() => {});
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-security-'));
  dirs.push(dir);
  return dir;
}

interface LoginFailure {
  code?: string;
  message: string;
  hint?: string;
}

/** A pg login through the ambassador that must fail; the error the client saw (captured for the scan). */
async function failedLogin(amb: TestAmbassador, extra: Record<string, unknown>): Promise<LoginFailure> {
  const client = new pg.Client({ ...(viaAmbassador(amb.port, extra) as pg.ClientConfig), connectionTimeoutMillis: 15_000 });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    const { code, message, hint } = err as LoginFailure;
    captureOutput('security-auth: a client-visible login error', JSON.stringify({ code, message, hint }));
    return { code, message, hint };
  } finally {
    await client.end().catch(() => {});
  }
  throw new Error('the login was expected to fail');
}

describe('an expired upstream password (VALID UNTIL in the past)', () => {
  const role = `sec_expired_${randomBytes(4).toString('hex')}`;
  let amb: TestAmbassador;

  before(async () => {
    roles.push(role);
    await superuser.query(
      `CREATE ROLE ${pg.escapeIdentifier(role)} LOGIN PASSWORD ${pg.escapeLiteral(TEST_SECRETS.expiredUpstreamPassword)} VALID UNTIL '2000-01-01'`,
    );
    // Each login's upstream password from a file named after it: app's works, the role's expired.
    const secrets = tempDir();
    writeFileSync(path.join(secrets, 'app'), topology.users.app.password);
    writeFileSync(path.join(secrets, role), TEST_SECRETS.expiredUpstreamPassword);
    amb = await ambassadors.start({
      clientAuth: { method: 'scram-sha-256', users: [{ name: 'app', password: CLIENT_PASSWORD }, { name: role, password: CLIENT_PASSWORD }] },
      upstream: { credentials: { type: 'exec', command: `cat "${secrets}/$PG_AMBASSADOR_USER"` }, connectTimeout: '1500ms', retry: { max: 0 } },
      health: { circuitBreaker: { threshold: 2, cooldown: '30s' } },
    });
  });

  test('the client gets 08001 saying the upstream login failed and why, with no secret in it', async () => {
    const err = await failedLogin(amb, { user: role, database: 'app' });
    assert.equal(err.code, '08001');
    assert.match(err.message, new RegExp(`^upstream authentication to 127\\.0\\.0\\.1:${topology.primary.port} failed: password authentication failed for user "${role}"`));
    assert.match(err.hint ?? '', /upstream\.credentials/);
    for (const secret of [TEST_SECRETS.expiredUpstreamPassword, CLIENT_PASSWORD]) assert.ok(!`${err.message} ${err.hint}`.includes(secret));
  });

  test('the hint names expiry (VALID UNTIL) among the causes, since Postgres tells clients only "password authentication failed"', async () => {
    const err = await failedLogin(amb, { user: role, database: 'app' });
    assert.match(err.hint ?? '', /an expired one \(the role's VALID UNTIL has passed\)/);
    assert.match(err.hint ?? '', /the server's log says which/);
  });

  test('it is a login problem, not a host problem: the breaker stays closed and other clients are served', async () => {
    for (let attempt = 0; attempt < 4; attempt++) {
      const err = await failedLogin(amb, { user: role, database: 'app' });
      assert.equal(err.code, '08001', `attempt ${attempt}: ${err.message}`);
      await assertStillServes(amb.port);
    }
    assert.deepEqual(amb.ambassador.hosts().map((host) => host.breaker), ['closed']);
  });

  test('the log says which login failed and why, and never the password', () => {
    const failures = amb.logs().filter((line) => line.msg === 'client could not be connected upstream' && line.user === role);
    assert.ok(failures.length > 0, 'a warning per failed client');
    assert.match(String(failures[0]!.reason), /password authentication failed for user/);
    assert.equal(failures[0]!.code, 'UPSTREAM_AUTH_FAILED');
    assert.ok(!amb.logText().includes(TEST_SECRETS.expiredUpstreamPassword));
  });

  test('once the role is valid again, the same login works (it was the expiry)', async () => {
    await superuser.query(`ALTER ROLE ${pg.escapeIdentifier(role)} VALID UNTIL 'infinity'`);
    await assertStillServes(amb.port, { user: role });
  });
});

// ---- channel binding ------------------------------------------------------------------------------

interface WireMessage {
  type: string;
  payload: Buffer;
}

/** A minimal protocol client over plain TCP or TLS (SSLRequest first): raw messages in and out. */
class Wire {
  private readonly inbox: WireMessage[] = [];
  private readonly framer = new Framer(1 << 20, ALL_TYPES);
  private closed = false;
  private wake: () => void = () => {};

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.framer.push(chunk, (type, payload) => {
        this.inbox.push({ type: String.fromCharCode(type), payload: Buffer.from(payload!) });
      });
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** useTls: true verifies the ambassador against the topology's CA; options replace that. */
  static async open(port: number, useTls: boolean | tls.ConnectionOptions): Promise<Wire> {
    const plain = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => plain.once('connect', resolve).once('error', reject));
    if (useTls === false) return new Wire(plain);
    plain.write(encodeSslRequest());
    const answer = await new Promise<Buffer>((resolve) => plain.once('data', resolve));
    assert.equal(answer.toString(), 'S', 'the ambassador accepts TLS');
    const options = useTls === true ? { ca: readFileSync(topology.certs.caCert), servername: 'localhost' } : useTls;
    const secure = tls.connect({ ...options, socket: plain });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    return new Wire(secure);
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  async next(timeoutMs = 5000): Promise<WireMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = this.inbox.shift();
      if (message) return message;
      if (this.closed) throw new Error('connection closed');
      if (Date.now() > deadline) throw new Error('timed out waiting for a message');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** The mechanisms of AuthenticationSASL after a StartupMessage for app. */
  async startScram(): Promise<string[]> {
    this.write(encodeStartupMessage([['user', 'app'], ['database', 'app']]));
    const reply = await this.next();
    if (reply.type === 'E') assert.fail(`expected AuthenticationSASL, got ${JSON.stringify(this.refusalFrom(reply))}`);
    const request = decodeAuthentication(reply.payload);
    assert.equal(request.code, AuthCode.SASL);
    return (request as { mechanisms: string[] }).mechanisms;
  }

  /** Reads to the ErrorResponse that must come (no AuthenticationOk before it); its fields. */
  async refusal(): Promise<{ code: string; message: string }> {
    for (;;) {
      const message = await this.next();
      if (message.type === 'R') assert.notEqual(decodeAuthentication(message.payload).code, AuthCode.Ok, 'AuthenticationOk for a refused client');
      if (message.type === 'E') {
        const fields = decodeErrorFields(message.payload);
        return { code: fields.get('C') ?? '', message: fields.get('M') ?? '' };
      }
    }
  }

  /** Runs the rest of a SCRAM exchange with `scram`; resolves with the ErrorResponse or 'ok'. */
  async finishScram(scram: ScramClient, mechanism = scram.mechanism): Promise<{ code: string; message: string } | 'ok'> {
    this.write(encodeSASLInitialResponse(mechanism, scram.clientFirst()));
    const first = await this.next();
    if (first.type === 'E') return this.refusalFrom(first);
    const serverFirst = decodeAuthentication(first.payload) as { code: number; data: Buffer };
    assert.equal(serverFirst.code, AuthCode.SASLContinue);
    this.write(encodeSASLResponse(scram.handleServerFirst(serverFirst.data)));
    const final = await this.next();
    if (final.type === 'E') return this.refusalFrom(final);
    scram.verifyServerFinal((decodeAuthentication(final.payload) as { data: Buffer }).data);
    assert.equal(decodeAuthentication((await this.next()).payload).code, AuthCode.Ok);
    for (let message = await this.next(15_000); message.type !== 'Z'; message = await this.next(15_000)) {
      if (message.type === 'E') assert.fail(`error after AuthenticationOk: ${JSON.stringify(this.refusalFrom(message))}`);
    }
    return 'ok';
  }

  private refusalFrom(message: WireMessage): { code: string; message: string } {
    const fields = decodeErrorFields(message.payload);
    return { code: fields.get('C') ?? '', message: fields.get('M') ?? '' };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

describe('SCRAM channel binding toward clients', () => {
  let amb: TestAmbassador;

  before(async () => {
    amb = await ambassadors.start({ listen: { tls: { cert: topology.certs.serverCert, key: topology.certs.serverKey } } });
  });

  /** Runs `body` on a fresh Wire and checks that nothing went upstream for it. */
  async function withWire(useTls: boolean, body: (wire: Wire) => Promise<void>, opensUpstream = false): Promise<void> {
    const connects = amb.upstreamConnects();
    const wire = await Wire.open(amb.port, useTls);
    try {
      await body(wire);
    } finally {
      wire.destroy();
    }
    if (!opensUpstream) assert.equal(amb.upstreamConnects(), connects, 'nothing upstream for a refused client');
  }

  const bindingOf = (wire: Wire) => ({
    type: 'tls-server-end-point' as const,
    data: certificateChannelBindingHash((wire.socket as tls.TLSSocket).getPeerX509Certificate()!.raw),
  });

  test('TLS clients are offered SCRAM-SHA-256-PLUS first; plaintext clients only SCRAM-SHA-256', async () => {
    await withWire(true, async (wire) => assert.deepEqual(await wire.startScram(), ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']));
    await withWire(false, async (wire) => assert.deepEqual(await wire.startScram(), ['SCRAM-SHA-256']));
  });

  test('a TLS client binding to the certificate it received logs in with SCRAM-SHA-256-PLUS', async () => {
    await withWire(
      true,
      async (wire) => {
        await wire.startScram();
        assert.equal(await wire.finishScram(new ScramClient({ password: CLIENT_PASSWORD, channelBinding: bindingOf(wire) })), 'ok');
      },
      true,
    );
    assert.equal(amb.logs().filter((line) => line.msg === 'client logged in').at(-1)?.auth, 'SCRAM-SHA-256-PLUS');
  });

  test("binding data of another certificate (a man in the middle's) is refused, even with the right password", async () => {
    await withWire(true, async (wire) => {
      await wire.startScram();
      const foreign = { type: 'tls-server-end-point' as const, data: randomBytes(32) };
      const refused = await wire.finishScram(new ScramClient({ password: CLIENT_PASSWORD, channelBinding: foreign }));
      assert.deepEqual(refused, { code: '08P01', message: 'malformed SCRAM message: client-final-message: channel binding data does not match this connection' });
    });
  });

  test("a TLS client sending 'y' (it thinks the server cannot bind) after -PLUS was offered is refused as a downgrade", async () => {
    await withWire(true, async (wire) => {
      await wire.startScram();
      const refused = await wire.finishScram(new ScramClient({ password: CLIENT_PASSWORD, channelBindingSupported: true }));
      assert.equal(typeof refused === 'object' && refused.code, '08P01');
      assert.match(typeof refused === 'object' ? refused.message : '', /downgrade/);
    });
  });

  test('SCRAM-SHA-256-PLUS chosen without binding data is refused', async () => {
    await withWire(true, async (wire) => {
      await wire.startScram();
      const refused = await wire.finishScram(new ScramClient({ password: CLIENT_PASSWORD }), 'SCRAM-SHA-256-PLUS');
      assert.equal(typeof refused === 'object' && refused.code, '08P01');
    });
  });

  test("a plaintext client choosing -PLUS, or claiming binding ('p') under SCRAM-SHA-256, is refused", async () => {
    await withWire(false, async (wire) => {
      await wire.startScram();
      const fake = { type: 'tls-server-end-point' as const, data: randomBytes(32) };
      const refused = await wire.finishScram(new ScramClient({ password: CLIENT_PASSWORD, channelBinding: fake }));
      assert.equal(typeof refused === 'object' && refused.code, '08P01');
      assert.match(typeof refused === 'object' ? refused.message : '', /unsupported SASL mechanism "SCRAM-SHA-256-PLUS"/);
    });
    await withWire(false, async (wire) => {
      await wire.startScram();
      wire.write(encodeSASLInitialResponse('SCRAM-SHA-256', Buffer.from(`p=tls-server-end-point,,n=,r=${randomBytes(18).toString('base64')}`)));
      const refused = await wire.refusal();
      assert.equal(refused.code, '08P01');
      assert.match(refused.message, /includes binding data/);
    });
  });

  test('psql with channel_binding=require refuses a plaintext connection (nothing to bind to was offered)', async () => {
    const failure = await run('psql', ['-X', '-A', '-t', '-w', '-c', 'select 1'], {
      env: { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(amb.port), PGUSER: 'app', PGDATABASE: 'app', PGPASSWORD: CLIENT_PASSWORD, PGSSLMODE: 'disable', PGCHANNELBINDING: 'require' },
    }).then(
      () => assert.fail('psql logged in without channel binding'),
      (err: { stderr: string }) => err.stderr,
    );
    assert.match(failure, /channel binding/);
  });

  test('a listener certificate channel binding cannot use (Ed25519) still serves SCRAM, without offering -PLUS', async () => {
    const dir = tempDir();
    const [cert, key] = [path.join(dir, 'ed25519.crt'), path.join(dir, 'ed25519.key')];
    await run('openssl', ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost']);
    const edAmb = await ambassadors.start({ listen: { tls: { cert, key } } });
    const wire = await Wire.open(edAmb.port, { rejectUnauthorized: false });
    try {
      assert.deepEqual(await wire.startScram(), ['SCRAM-SHA-256']);
    } finally {
      wire.destroy();
    }
    const client = new pg.Client({ ...(viaAmbassador(edAmb.port) as pg.ClientConfig), ssl: { rejectUnauthorized: false } });
    await client.connect();
    try {
      assert.equal((await client.query('select 1 as one')).rows[0].one, 1);
    } finally {
      await client.end();
    }
    assert.equal(edAmb.logs().find((line) => line.msg === 'client logged in')?.auth, 'SCRAM-SHA-256');
  });
});
