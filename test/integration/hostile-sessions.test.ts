// Hostile clients after (or around) authentication: a message header declaring 2 GiB, thousands
// of sockets opened and dropped, and CancelRequests with wrong keys. The ambassador must refuse
// cleanly, keep its memory bounded, leak no sessions or upstream connections, cancel nothing it
// was not asked to by the key's owner, and keep serving a normal `pg` client after each case.
// Pre-authentication abuse lives in hostile-clients.test.ts.

import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { encodeQuery } from '../../src/protocol/frontend.ts';
import { encodeCancelRequest, encodeSslRequest, encodeStartupMessage } from '../../src/protocol/startup.ts';
import { CLIENT_PASSWORD, spawnAmbassador, startTestAmbassador, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { assertStillServes, expectRefused } from '../support/hostile.ts';
import { loginScram, RawClient } from '../support/raw-client.ts';
import { clientConfig, eventually, getTopology, type Topology } from '../support/topology.ts';

let topology: Topology;
let amb: TestAmbassador;
let admin: pg.Client;

before(async () => {
  topology = await getTopology();
  amb = await startTestAmbassador(topology);
  admin = new pg.Client(clientConfig(topology, topology.primary, topology.superuser));
  admin.on('error', () => {}); // the cluster may stop before this file's after() hook runs
  await admin.connect();
});
after(async () => {
  await admin?.end().catch(() => {});
  await amb?.stop();
});

const MB = 1024 * 1024;

/** Upstream backends whose query text contains `marker` and that are running it right now. */
async function activeWith(marker: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    "select count(*)::int as n from pg_stat_activity where state = 'active' and query like $1 and pid <> pg_backend_pid()",
    [`%${marker}%`],
  );
  return rows[0]!.n;
}

async function upstreamBackends(applicationName: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where application_name = $1', [applicationName]);
  return rows[0]!.n;
}

/** Waits for the in-process ambassador's session registry to empty. */
async function expectNoSessions(timeoutMs: number): Promise<void> {
  const sessions = amb.ambassador.listener.sessions;
  await eventually(async () => (sessions.size === 0 ? true : undefined), { what: 'every session to close', timeoutMs }).catch((err: Error) => {
    throw new Error(`${err.message}: ${sessions.size} still registered (states: ${[...sessions].map((x) => x.state).join(', ')})`);
  });
}

describe('a message declaring 2^31-1 bytes after login', () => {
  const configs: Array<[string, Record<string, unknown>]> = [
    ['default maxMessageSize (1 GiB)', {}],
    ["listen.maxMessageSize '1MB'", { listen: { maxMessageSize: '1MB' } }],
  ];
  for (const [label, overrides] of configs) {
    test(`${label}: refused with a FATAL error or a close, memory does not grow by the declared length`, async () => {
      const child = await spawnAmbassador(topology, overrides);
      try {
        await assertStillServes(child.port); // warm up the paths a login takes before measuring
        for (const type of ['Q', 'P', 'd']) {
          const client = await loginScram(child.port, 'app', CLIENT_PASSWORD);
          const before = child.rss();
          const header = Buffer.alloc(5);
          header.write(type, 0, 'latin1');
          header.writeInt32BE(0x7fffffff, 1);
          // The header, then 4 MB of the promised payload: enough to tempt a buffering proxy.
          client.write([header, Buffer.alloc(4 * MB, 0x78)]);
          const reply = await expectRefused(client, ['08P01'], { allowBareClose: true, afterLogin: true, message: /declares|length|large/ });
          const afterRss = child.rss();
          const growth = afterRss - before;
          console.log(
            `[huge-length ${label} '${type}'] reply=${reply.kind === 'error' ? reply.code : 'close'} ` +
              `rss before=${(before / MB).toFixed(1)} MB after=${(afterRss / MB).toFixed(1)} MB growth=${(growth / MB).toFixed(1)} MB`,
          );
          assert.ok(growth < 50 * MB, `RSS grew by ${(growth / MB).toFixed(1)} MB after a 2 GiB declaration`);
        }
        await assertStillServes(child.port);
      } finally {
        await child.stop();
      }
    });
  }
});

/** One socket of the churn: opened, abused in one of several ways, then dropped. */
async function churnOne(port: number, variant: number): Promise<void> {
  const client = await RawClient.connect(port);
  const startup = encodeStartupMessage([['user', 'app'], ['database', 'app']]);
  switch (variant % 5) {
    case 0: // connect and vanish
      break;
    case 1: // half a startup packet
      client.write(startup.subarray(0, 7));
      break;
    case 2: // a whole startup, then a reset in the middle of SCRAM
      client.write(startup);
      break;
    case 3: // an SSLRequest left unanswered by the client
      client.write(encodeSslRequest());
      break;
    case 4: // garbage
      client.write(randomBytes(64));
      break;
  }
  if (variant % 2 === 0) client.socket.resetAndDestroy();
  else client.socket.end();
}

describe('connection churn', () => {
  test('2,000 sockets opened and dropped in batches: no leaked sessions, still serving', async () => {
    const connectsBefore = amb.upstreamConnects();
    const batch = 200;
    for (let start = 0; start < 2_000; start += batch) {
      await Promise.all(Array.from({ length: batch }, (_, i) => churnOne(amb.port, start + i)));
    }
    await expectNoSessions(15_000);
    assert.equal(amb.upstreamConnects(), connectsBefore, 'unauthenticated sockets opened upstream connections');
    assert.equal(amb.ambassador.listener.cancels.size, 0, 'cancel keys leaked');
    const errors = amb.logs().filter((line) => Number(line.level) >= 50);
    assert.deepEqual(errors, [], 'error-level log lines during the churn');
    await assertStillServes(amb.port);
  });

  test('logged-in clients dropped mid-query release their sessions and upstream connections', async () => {
    const applicationName = `hostile-churn-${randomBytes(4).toString('hex')}`;
    for (let round = 0; round < 5; round++) {
      const clients = await Promise.all(
        Array.from({ length: 10 }, () => loginScram(amb.port, 'app', CLIENT_PASSWORD, { params: [['application_name', applicationName]] })),
      );
      const marker = `${applicationName}-round-${round}`;
      for (const client of clients) client.write(encodeQuery(`select pg_sleep(2) /* ${marker} */`));
      await eventually(async () => ((await activeWith(marker)) === clients.length ? true : undefined), { what: 'the queries to run upstream' });
      for (const [i, client] of clients.entries()) {
        if (i % 2 === 0) client.socket.resetAndDestroy();
        else client.destroy();
      }
    }
    await expectNoSessions(10_000);
    // Postgres notices a vanished client only when pg_sleep(2) ends and it writes the result.
    await eventually(async () => ((await upstreamBackends(applicationName)) === 0 ? true : undefined), {
      what: 'upstream backends of dropped clients to end',
      timeoutMs: 15_000,
    });
    await assertStillServes(amb.port);
  });
});

describe('CancelRequest', () => {
  async function sendCancel(processId: number, secretKey: number): Promise<void> {
    const key = Buffer.alloc(4);
    key.writeInt32BE(secretKey | 0, 0);
    const raw = await RawClient.connect(amb.port);
    raw.write(encodeCancelRequest(processId, key));
    await raw.waitForClose(5_000); // the ambassador closes a cancel connection without a reply
    assert.equal(raw.history.length, 0, 'a CancelRequest got a reply');
    raw.destroy();
  }

  test('CancelRequests with unknown keys leave no session behind (else 1,000 of them lock every client out)', async () => {
    const connectsBefore = amb.upstreamConnects();
    for (let i = 0; i < 50; i++) await sendCancel(randomInt(1, 0x7fffffff), randomInt(0, 0x7fffffff));
    await expectNoSessions(3_000);
    assert.equal(amb.upstreamConnects(), connectsBefore, 'an unknown cancel key reached the server');
    await assertStillServes(amb.port);
  });

  test('a wrong key does not cancel a running query; the right key does', async () => {
    const client = new pg.Client({ ...viaAmbassador(amb.port), connectionTimeoutMillis: 10_000 });
    client.on('error', () => {});
    await client.connect();
    try {
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
      const marker = `hostile-cancel-${randomBytes(4).toString('hex')}`;
      const connectsBefore = amb.upstreamConnects();
      const started = Date.now();
      const running = client.query(`select pg_sleep(1) as slept /* ${marker} */`);
      await eventually(async () => ((await activeWith(marker)) === 1 ? true : undefined), { what: 'the query to run upstream' });
      await sendCancel(processID, secretKey ^ 1);
      await sendCancel(processID ^ 1, secretKey);
      await sendCancel(randomInt(1, 0x7fffffff), randomInt(0, 0x7fffffff));
      const result = await running;
      assert.equal(result.rowCount, 1, 'the query completed normally');
      assert.ok(Date.now() - started >= 1_000, 'pg_sleep(1) ran to its end');
      assert.equal(amb.upstreamConnects(), connectsBefore, 'a wrong-key cancel reached the server');

      // Control: the same path with the right key does cancel (so the check above can fail).
      const controlMarker = `${marker}-control`;
      // Its outcome is taken before the cancel is sent: the cancel connection closes only once the
      // cancel has reached the server, so the query's error can arrive before that close.
      const control = client.query(`select pg_sleep(30) /* ${controlMarker} */`).then(
        () => assert.fail('the control query was not cancelled'),
        (err: Error & { code?: string }) => err,
      );
      await eventually(async () => ((await activeWith(controlMarker)) === 1 ? true : undefined), { what: 'the control query to run' });
      const controlStarted = Date.now();
      await sendCancel(processID, secretKey);
      const error = await control;
      assert.equal(error.code, '57014', error.message);
      assert.ok(Date.now() - controlStarted < 10_000);
      await client.query('select 1');
    } finally {
      await client.end().catch(() => {});
    }
    await assertStillServes(amb.port);
  });
});
