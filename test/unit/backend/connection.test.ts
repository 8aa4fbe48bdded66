import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { BackendConnection, type ServerSink } from '../../../src/backend/connection.ts';
import { TcpConnector } from '../../../src/backend/connector.ts';
import {
  decodeResultShape,
  encodeCommandComplete,
  encodeDataRow,
  encodeErrorResponse,
  encodeReadyForQuery,
  encodeTextRowDescription,
  NO_DATA,
  NO_RESULT,
  PARSE_COMPLETE,
  summarizeError,
} from '../../../src/protocol/backend.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../../src/protocol/frontend.ts';
import { MessageWriter } from '../../../src/protocol/writer.ts';
import { FakeUpstream, type Script } from '../../support/fake-upstream.ts';

const PASSWORD = 'fake-upstream-password';

/** A fake server running `script` after an honest cleartext login, and a connection logged in to it. */
async function connected(t: TestContext, script: Script): Promise<BackendConnection> {
  const fake = await FakeUpstream.start({
    scriptFor: () => async (connection) => {
      await connection.loginCleartext(PASSWORD);
      connection.ready();
      await script(connection);
    },
  });
  t.after(() => fake.close());
  const conn = await BackendConnection.connect({
    connector: new TcpConnector(),
    target: { host: fake.host, port: fake.port },
    tls: () => ({ mode: 'disable' }),
    connectTimeoutMs: 5_000,
    user: 'app',
    database: 'app',
    params: new Map(),
    password: async () => PASSWORD,
    maxMessageSize: 1 << 20,
  });
  t.after(() => conn.close(true));
  return conn;
}

function sink(onData: (chunk: Buffer) => void = () => {}): ServerSink {
  return { onServerData: onData, onServerDrain: () => {}, onServerClose: () => {} };
}

test('a connection its sink paused is read again once the sink lets go: the server closing it is noticed', async (t) => {
  let hangUp!: () => void;
  const told = new Promise<void>((resolve) => (hangUp = resolve));
  const conn = await connected(t, async (connection) => {
    await told;
    connection.end();
  });
  const closed = new Promise<void>((resolve) => conn.socket.once('close', () => resolve()));
  const holder = sink();
  conn.attach(holder);
  conn.pause(); // the client could not take more
  conn.detach(holder); // ReadyForQuery: back to the pool
  hangUp();
  await closed;
  assert.equal(conn.isClosed, true);
});

test('an exchange the sink starts while handling a chunk reads the answer to its own query, not that chunk', async (t) => {
  const conn = await connected(t, async (connection) => {
    await connection.nextQuery();
    connection.send(encodeCommandComplete('SELECT 0'), encodeReadyForQuery('I'));
    await connection.nextQuery();
    connection.send(encodeErrorResponse({ severity: 'ERROR', code: '42000', message: 'the answer to the exchange' }), encodeReadyForQuery('I'));
  });
  let startExchange: ((answer: Promise<{ error: Buffer | null }>) => void) | null = null;
  const answered = new Promise<{ error: Buffer | null }>((resolve) => (startExchange = resolve));
  const holder = sink(() => {
    if (startExchange === null) return;
    conn.detach(holder);
    startExchange(conn.exchange([encodeQuery('select 2')], 1, 5_000));
    startExchange = null;
  });
  conn.attach(holder);
  conn.write(encodeQuery('select 1'));
  const { error } = await answered;
  assert.ok(error !== null, "the exchange took the sink's ReadyForQuery for its own");
  assert.equal(summarizeError(error).message, 'the answer to the exchange');
});

test('an exchange keeps the shape of each RowDescription and NoData; inside a client’s open exchange a Describe counts as answered by either', async (t) => {
  const parameters = Buffer.from([0x74, 0, 0, 0, 6, 0, 0]);
  const conn = await connected(t, async (connection) => {
    // With Sync: a settings replay that returns a row, then a statement described: all up to ReadyForQuery.
    for (let i = 0; i < 4; i++) await connection.nextMessage();
    connection.send(encodeTextRowDescription(['set_config']), encodeDataRow(['x']), encodeCommandComplete('SELECT 1'), encodeReadyForQuery('I'), PARSE_COMPLETE, parameters, encodeTextRowDescription(['a']), encodeReadyForQuery('I'));
    // With Flush (inside the client's exchange): done at the last acknowledgement, the Describe's NoData.
    for (let i = 0; i < 3; i++) await connection.nextMessage();
    connection.send(PARSE_COMPLETE, parameters, NO_DATA);
  });
  const shapes: Array<string | null> = [];
  const synced = await conn.exchange([encodeQuery('select set_config()'), encodeParse('pa_1', 'select 1 as a', Buffer.from([0, 0])), encodeTarget(FrontendType.Describe, 'S', 'pa_1'), encodeSync()], 2, 5_000, { shapes });
  assert.equal(synced.error, null);
  assert.deepEqual(shapes, [decodeResultShape(encodeTextRowDescription(['set_config']).subarray(5)), decodeResultShape(encodeTextRowDescription(['a']).subarray(5))]);
  const open: Array<string | null> = [];
  const flushed = await conn.exchange([encodeParse('pa_2', 'create table x ()', Buffer.from([0, 0])), encodeTarget(FrontendType.Describe, 'S', 'pa_2'), new MessageWriter().finish(FrontendType.Flush)], { acknowledgements: 2 }, 5_000, { shapes: open });
  assert.equal(flushed.error, null, 'done at the NoData: not waiting for a ReadyForQuery that never comes');
  assert.deepEqual(open, [NO_RESULT]);
});
