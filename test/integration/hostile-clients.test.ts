// Hostile input on the client port before authentication completes: garbage, broken startup
// packets, unsupported protocol versions, encryption-request tricks and malformed SCRAM. Each
// case must end in a clean refusal (an ErrorResponse with the right SQLSTATE and a close, or a
// bare close where noted), open nothing upstream, and leave the ambassador serving a normal
// `pg` client. Post-authentication abuse lives in hostile-sessions.test.ts.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { AuthCode } from '../../src/protocol/backend.ts';
import { encodeQuery, encodeSASLInitialResponse, encodeSASLResponse } from '../../src/protocol/frontend.ts';
import { ScramClient } from '../../src/protocol/scram.ts';
import { encodeSslRequest, encodeStartupMessage, GSSENC_REQUEST_CODE, PROTOCOL_3_0 } from '../../src/protocol/startup.ts';
import { MessageWriter } from '../../src/protocol/writer.ts';
import { CLIENT_PASSWORD, startTestAmbassador, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { assertStillServes, expectRefused } from '../support/hostile.ts';
import { beginScram, completeScram, expectAuthRequest, RawClient, startupPacket } from '../support/raw-client.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

let topology: Topology;
let amb: TestAmbassador;

before(async () => {
  topology = await getTopology();
  amb = await startTestAmbassador(topology);
});
after(async () => {
  await amb?.stop();
});

const APP_STARTUP: Array<[string, string]> = [
  ['user', 'app'],
  ['database', 'app'],
];

interface CaseOptions {
  /** The ambassador under test (default: the scram one of this file). */
  target?: () => TestAmbassador;
  /** Upstream connections the case itself opens: 0 unless a client legitimately logs in. */
  logins?: number;
}

/**
 * A case: runs `body`, asserts that it opened no upstream connection beyond its legitimate
 * logins, then that a normal pg client is still served.
 */
function hostileCase(name: string, body: () => Promise<void>, options: CaseOptions = {}): void {
  test(name, async () => {
    const ambassador = (options.target ?? (() => amb))();
    const connectsBefore = ambassador.upstreamConnects();
    await body();
    const opened = ambassador.upstreamConnects() - connectsBefore;
    // Unauthenticated clients must open none; a legitimate login may reuse a pooled connection.
    if (options.logins === undefined) assert.equal(opened, 0, 'upstream connections opened by an unauthenticated client');
    else assert.ok(opened <= options.logins, `upstream connections opened: ${opened}, at most ${options.logins} expected`);
    await assertStillServes(ambassador.port);
  });
}

async function send(port: number, ...chunks: Buffer[]): Promise<RawClient> {
  const client = await RawClient.connect(port);
  client.write(chunks);
  return client;
}

function gssEncRequest(): Buffer {
  const packet = Buffer.alloc(8);
  packet.writeInt32BE(8, 0);
  packet.writeInt32BE(GSSENC_REQUEST_CODE, 4);
  return packet;
}

describe('startup phase', () => {
  hostileCase('random garbage bytes are refused or dropped, never hang', async () => {
    const replies = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const client = await send(amb.port, randomBytes(1 + Math.floor(Math.random() * 4096)));
        // A random length that happens to look valid waits for the rest until the login timeout (5 s).
        return expectRefused(client, ['08P01', '0A000', '08006'], { allowBareClose: true, timeoutMs: 8_000 });
      }),
    );
    assert.ok(replies.some((r) => r.kind === 'error'), 'at least some garbage gets an explicit ErrorResponse');
  });

  hostileCase('a truncated startup packet followed by a close leaves no session behind', async () => {
    const packet = encodeStartupMessage(APP_STARTUP);
    for (const cut of [1, 3, 4, 8, packet.length - 1]) {
      const client = await send(amb.port, packet.subarray(0, cut));
      client.socket.end();
      await client.waitForClose();
    }
    await eventually(async () => (amb.ambassador.listener.sessions.size === 0 ? true : undefined), { what: 'sessions to close' });
  });

  hostileCase('startup lengths 0, 1, 7, negative and 2^31-1 are refused with 08P01', async () => {
    for (const length of [0, 1, 7, -1, -0x80000000, 0x7fffffff]) {
      const packet = Buffer.alloc(8);
      packet.writeInt32BE(length, 0);
      packet.writeInt32BE(PROTOCOL_3_0, 4);
      const started = Date.now();
      await expectRefused(await send(amb.port, packet), ['08P01'], { message: /length/ });
      assert.ok(Date.now() - started < 2_000, `length ${length}: refused at once, not by the login timeout`);
    }
  });

  hostileCase('protocol versions 1.0, 2.0 and 4.0 are refused with 0A000', async () => {
    for (const major of [1, 2, 4]) {
      const client = await send(amb.port, startupPacket(APP_STARTUP, { major, minor: 0 }));
      await expectRefused(client, ['0A000'], { message: new RegExp(`protocol ${major}\\.0`) });
    }
  });

  hostileCase('protocol 3.99 gets NegotiateProtocolVersion (3.0 and unknown _pq_ options), then auth proceeds', async () => {
    const client = await send(amb.port, startupPacket([...APP_STARTUP, ['_pq_.hostile_option', 'on']], { major: 3, minor: 99 }));
    try {
      const negotiate = await client.nextMessage();
      assert.equal(negotiate.type, 'v');
      assert.equal(negotiate.payload.readInt32BE(0), PROTOCOL_3_0, 'newest minor version supported: 3.0');
      assert.equal(negotiate.payload.readInt32BE(4), 1, 'one unsupported protocol option');
      assert.equal(negotiate.payload.toString('utf8', 8, negotiate.payload.length - 1), '_pq_.hostile_option');
      await completeScram(client, CLIENT_PASSWORD);
      const replies = await client.query('select 1');
      assert.deepEqual(replies.map((m) => m.type), ['T', 'D', 'C', 'Z']);
    } finally {
      client.destroy();
    }
  }, { logins: 1 });

  hostileCase('a startup without a user is refused (28000 or 08P01)', async () => {
    await expectRefused(await send(amb.port, encodeStartupMessage([['database', 'app']])), ['28000', '08P01']);
    await expectRefused(await send(amb.port, encodeStartupMessage([['user', ''], ['database', 'app']])), ['28000', '08P01']);
  });

  hostileCase('plaintext bytes in the same packet as an SSL/GSSENC request are refused with 08P01, never processed', async () => {
    for (const request of [encodeSslRequest(), gssEncRequest()]) {
      const client = await send(amb.port, request, encodeStartupMessage(APP_STARTUP));
      await expectRefused(client, ['08P01'], { message: /unencrypted data/ });
      assert.ok(!client.history.some((m) => m.type === 'R'), 'the smuggled startup packet was processed');
    }
  });

  hostileCase("a GSSENCRequest is answered 'N' and a normal startup may follow", async () => {
    const client = await send(amb.port, gssEncRequest());
    try {
      assert.equal(String.fromCharCode(await client.readByte()), 'N');
      client.write(encodeStartupMessage(APP_STARTUP));
      await completeScram(client, CLIENT_PASSWORD);
      assert.equal((await client.query('select 1')).at(-2)?.type, 'C');
    } finally {
      client.destroy();
    }
  }, { logins: 1 });

  hostileCase('a startup with 10,000 parameters is refused with 08P01 (over the packet size limit)', async () => {
    const params = Array.from({ length: 10_000 }, (_, i): [string, string] => [`p${i}`, 'v']);
    await expectRefused(await send(amb.port, encodeStartupMessage([...APP_STARTUP, ...params])), ['08P01']);
  });
});

describe('with a 300 ms login timeout and a 1 MB startup packet limit', () => {
  let tuned: TestAmbassador;
  before(async () => {
    tuned = await startTestAmbassador(topology, { listen: { loginTimeout: '300ms', maxStartupPacketSize: '1MB' } });
  });
  after(async () => {
    await tuned?.stop();
  });

  hostileCase(
    'a truncated startup (or nothing at all) followed by silence is closed after the login timeout',
    async () => {
      const packet = encodeStartupMessage(APP_STARTUP);
      for (const bytes of [packet.subarray(0, 10), Buffer.alloc(0)]) {
        const client = await RawClient.connect(tuned.port);
        const started = Date.now();
        if (bytes.length > 0) client.write(bytes);
        const reply = await client.expectErrorOrClose(5_000);
        if (reply.kind === 'error') assert.equal(reply.code, '08006', reply.message);
        const elapsed = (await client.waitForClose(5_000)) - started;
        client.destroy();
        assert.ok(elapsed >= 250, `closed after ${elapsed} ms, before the 300 ms login timeout`);
        assert.ok(elapsed < 5_000, `closed after ${elapsed} ms`);
      }
    },
    { target: () => tuned },
  );

  hostileCase(
    'a startup with 10,000 parameters within the size limit is refused by the parameter count',
    async () => {
      const params = Array.from({ length: 10_000 }, (_, i): [string, string] => [`p${i}`, 'v']);
      const client = await send(tuned.port, encodeStartupMessage([...APP_STARTUP, ...params]));
      await expectRefused(client, ['08P01'], { message: /parameters/ });
    },
    { target: () => tuned },
  );
});

/** A SASLInitialResponse with an arbitrary declared inner length. */
function saslInitialWithInnerLength(mechanism: string, innerLength: number, data: Buffer): Buffer {
  return new MessageWriter().cstring(mechanism).int32(innerLength).bytes(data).finish(0x70);
}

/** Runs a legit client-first and returns the client-final the ScramClient would send. */
async function legitFirst(client: RawClient): Promise<string> {
  const scram = new ScramClient({ password: CLIENT_PASSWORD });
  client.write(encodeSASLInitialResponse(scram.mechanism, scram.clientFirst()));
  const serverFirst = (await expectAuthRequest(client, AuthCode.SASLContinue)) as { data: Buffer };
  return scram.handleServerFirst(serverFirst.data).toString('latin1');
}

describe('malformed SCRAM', () => {
  const CLIENT_FIRST = Buffer.from('n,,n=,r=hostileNonce0123456789');

  hostileCase('a client-first with a broken GS2 header is refused with 08P01', async () => {
    for (const first of ['x,,n=,r=abc', 'n,a=admin,n=,r=abc', 'n', 'p=tls-unique,,n=,r=abc', '']) {
      const client = await beginScram(amb.port, 'app');
      client.write(encodeSASLInitialResponse('SCRAM-SHA-256', Buffer.from(first)));
      await expectRefused(client, ['08P01']);
    }
  });

  hostileCase('a huge, negative or oversized inner length in SASLInitialResponse is refused with 08P01', async () => {
    for (const innerLength of [0x7fffffff, CLIENT_FIRST.length + 1, -2, -0x80000000, -1]) {
      const client = await beginScram(amb.port, 'app');
      client.write(saslInitialWithInnerLength('SCRAM-SHA-256', innerLength, CLIENT_FIRST));
      await expectRefused(client, ['08P01']);
    }
  });

  hostileCase('a SASLInitialResponse declaring a 2 GiB message is refused at its header', async () => {
    const client = await beginScram(amb.port, 'app');
    const header = Buffer.alloc(5);
    header.write('p', 0);
    header.writeInt32BE(0x7fffffff, 1);
    client.write([header, Buffer.from('SCRAM-SHA-256\0')]);
    await expectRefused(client, ['08P01']);
  });

  hostileCase('a wrong mechanism name is refused with 08P01', async () => {
    for (const mechanism of ['SCRAM-SHA-1', 'SCRAM-SHA-256-PLUS', 'PLAIN', '', 'x'.repeat(5000)]) {
      const client = await beginScram(amb.port, 'app');
      client.write(encodeSASLInitialResponse(mechanism, CLIENT_FIRST));
      await expectRefused(client, ['08P01']);
    }
  });

  hostileCase('a client-final with a wrong nonce is refused with 08P01', async () => {
    const client = await beginScram(amb.port, 'app');
    const final = await legitFirst(client);
    client.write(encodeSASLResponse(Buffer.from(final.replace(/,r=([^,]+),/, (_, nonce: string) => `,r=${nonce}X,`), 'latin1')));
    await expectRefused(client, ['08P01'], { message: /nonce/ });
  });

  hostileCase('a client-final with a bad proof is refused with 28P01', async () => {
    const client = await beginScram(amb.port, 'app');
    const final = await legitFirst(client);
    const proofAt = final.lastIndexOf(',p=') + 3;
    const proof = Buffer.from(final.slice(proofAt), 'base64');
    proof[0]! ^= 0x01;
    client.write(encodeSASLResponse(Buffer.from(final.slice(0, proofAt) + proof.toString('base64'), 'latin1')));
    await expectRefused(client, ['28P01']);
  });

  hostileCase('a client-final sent without a client-first is refused with 08P01', async () => {
    const final = Buffer.from(`c=biws,r=hostileNonce,p=${Buffer.alloc(32).toString('base64')}`);
    const client = await beginScram(amb.port, 'app');
    client.write(encodeSASLInitialResponse('SCRAM-SHA-256', final));
    await expectRefused(client, ['08P01']);
  });

  hostileCase('a SASLResponse (or a Query) before the SASLInitialResponse is refused with 08P01', async () => {
    for (const message of [encodeSASLResponse(CLIENT_FIRST), encodeQuery('select 1')]) {
      const client = await beginScram(amb.port, 'app');
      client.write(message);
      await expectRefused(client, ['08P01']);
    }
  });

  hostileCase('a wrong password or an unknown user via pg gets 28P01 and opens nothing upstream', async () => {
    for (const login of [
      { user: 'app', password: 'not-the-password' },
      { user: 'nobody', password: CLIENT_PASSWORD },
    ]) {
      const client = new pg.Client({ ...viaAmbassador(amb.port, login), connectionTimeoutMillis: 10_000 });
      client.on('error', () => {});
      const error = await client.connect().then(
        () => assert.fail(`login as ${login.user} with a wrong password succeeded`),
        (err: Error & { code?: string }) => err,
      );
      await client.end().catch(() => {});
      assert.equal(error.code, '28P01', error.message);
    }
  });
});
