// UpstreamTlsMaterial / ListenerTlsMaterial over real certificates (openssl CLI): load, swap on
// a rewrite or a Kubernetes `..data` swap, keep the old material on a bad or half-written file,
// recover on the next good write, reload() on demand, refuse bad files at construction.
// Handshakes between the two sides prove the secure contexts carry what the files hold.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import tls from 'node:tls';
import { after, before, test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { TcpConnector, type UpstreamTlsSettings } from '../../../src/backend/connector.ts';
import { ListenerTlsMaterial, UpstreamTlsMaterial, type TlsEvent } from '../../../src/credentials/tls-material.ts';
import { generateCerts, type ClusterCerts } from '../../../src/demo/certs.ts';
import { ConfigError } from '../../../src/errors.ts';

let root: string;
let certsA: ClusterCerts;
let certsB: ClusterCerts;
let expiredCertA: string; // server.key of A signed by CA A, valid only in 2020
let futureCertA: string; // the same, valid only in 2099

before(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-tls-material-'));
  [certsA, certsB] = await Promise.all([
    generateCerts(path.join(root, 'a'), { clientUser: 'app_cert' }),
    generateCerts(path.join(root, 'b'), { clientUser: 'app_cert' }),
  ]);
  expiredCertA = await resignServerCsr(certsA.dir, 'expired', '20200101000000Z', '20200102000000Z');
  futureCertA = await resignServerCsr(certsA.dir, 'future', '20990101000000Z', '20990102000000Z');
});
after(() => rmSync(root, { recursive: true, force: true }));

/** `openssl ca` can set explicit dates (x509 -req cannot in OpenSSL 3.0). */
async function resignServerCsr(dir: string, name: string, start: string, end: string): Promise<string> {
  const conf = `[ca]\ndefault_ca = d\n[d]\ndatabase = ${name}.idx\nnew_certs_dir = .\nserial = ${name}.srl\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n`;
  writeFileSync(path.join(dir, `${name}.cnf`), conf);
  writeFileSync(path.join(dir, `${name}.idx`), '');
  writeFileSync(path.join(dir, `${name}.srl`), '01\n');
  await promisify(execFile)('openssl', ['ca', '-batch', '-notext', '-config', `${name}.cnf`, '-cert', 'ca.crt', '-keyfile', 'ca.key',
    '-in', 'server.csr', '-out', `${name}.crt`, '-startdate', start, '-enddate', end], { cwd: dir });
  return path.join(dir, `${name}.crt`);
}

interface Harness {
  dir: string;
  log: pino.Logger;
  logText(): string;
  onEvent(event: TlsEvent): void;
  /** Resolves with the next event of `type` (registered before the action that causes it). */
  next(type: TlsEvent['type'], timeoutMs?: number): Promise<TlsEvent>;
  events: TlsEvent[];
}

function harness(t: TestContext): Harness {
  const dir = mkdtempSync(path.join(root, 'case-'));
  const sink = new PassThrough();
  let text = '';
  sink.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const events: TlsEvent[] = [];
  const waiters: Array<{ type: TlsEvent['type']; resolve(event: TlsEvent): void }> = [];
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    log: pino({ level: 'debug' }, sink),
    logText: () => text,
    events,
    onEvent(event) {
      events.push(event);
      for (const waiter of waiters.filter((w) => w.type === event.type)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(event);
      }
    },
    next(type, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        // The deadline also keeps the event loop alive: the watch's own timers are unref'd.
        const timer = setTimeout(() => reject(new Error(`no ${type} within ${timeoutMs} ms; events: ${JSON.stringify(events)}`)), timeoutMs);
        waiters.push({ type, resolve: (event) => (clearTimeout(timer), resolve(event)) });
      });
    },
  };
}

function copy(from: string, dir: string, name: string): string {
  const to = path.join(dir, name);
  copyFileSync(from, to);
  return to;
}

/** Write to a temp file beside the target, then rename over it (what careful tools do). */
function writeAtomic(file: string, contents: string | Buffer): void {
  const temp = `${file}.tmp-${process.hrtime.bigint()}`;
  writeFileSync(temp, contents);
  renameSync(temp, file);
}

/** The settings field holds exactly the file's bytes. */
const holds = (value: string | Buffer | undefined, file: string): boolean => value !== undefined && Buffer.from(value).equals(readFileSync(file));

const fingerprint = (certFile: string): string => new X509Certificate(readFileSync(certFile)).fingerprint256;

/** A server wrapping sockets with `serverContext` (as the session does); a client verifying with `client` (as the connector does). */
async function handshake(serverContext: tls.SecureContext, client: UpstreamTlsSettings | tls.SecureContext): Promise<string> {
  const clientContext = 'mode' in client ? client.secureContext! : client;
  const server = net.createServer((plain) => {
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: serverContext });
    secure.on('error', () => plain.destroy());
    secure.on('secure', () => secure.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as net.AddressInfo;
    return await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: true, secureContext: clientContext });
      socket.once('secureConnect', () => (resolve(socket.getPeerCertificate().fingerprint256), socket.destroy()));
      socket.once('error', reject);
    });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

/** Listener material over copies of `certs`' server cert/key in the harness dir. */
function listener(h: Harness, t: TestContext, certs: ClusterCerts, extra: { minVersion?: 'TLSv1.2' | 'TLSv1.3'; watch?: boolean } = {}) {
  const cert = copy(certs.serverCert, h.dir, 'tls.crt');
  const key = copy(certs.serverKey, h.dir, 'tls.key');
  const material = new ListenerTlsMaterial({ cert, key, minVersion: extra.minVersion ?? 'TLSv1.2' }, { log: h.log, onEvent: h.onEvent, pollMs: 200, watch: extra.watch ?? true });
  t.after(() => material.close());
  return { material, cert, key };
}

function upstream(h: Harness, t: TestContext, files: { ca: string; cert?: string; key?: string }, watch = true, minVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.2') {
  const material = new UpstreamTlsMaterial({ mode: 'verify-full', ...files, serverName: 'localhost', minVersion }, { log: h.log, onEvent: h.onEvent, pollMs: 200, watch });
  t.after(() => material.close());
  return material;
}

test('loads at construction: frozen settings whose secure context verifies the server; listener context presents its cert', async (t) => {
  const h = harness(t);
  const { material: listen } = listener(h, t, certsA);
  const up = upstream(h, t, { ca: copy(certsA.caCert, h.dir, 'ca.crt'), cert: certsA.clientCert, key: certsA.clientKey });
  const settings = up.current();
  assert.equal(up.current(), settings, 'the same object while nothing changes');
  assert.ok(Object.isFrozen(settings));
  assert.deepEqual([settings.mode, settings.serverName, settings.minVersion], ['verify-full', 'localhost', 'TLSv1.2']);
  assert.ok(holds(settings.ca, certsA.caCert) && holds(settings.cert, certsA.clientCert));
  assert.equal(await handshake(listen.current()!, settings), fingerprint(certsA.serverCert));
  const other = upstream(h, t, { ca: certsB.caCert });
  await assert.rejects(handshake(listen.current()!, other.current()), /self[- ]signed|unable to (get|verify)/i);
  assert.match(h.logText(), /"msg":"TLS material loaded"/);
  assert.match(h.logText(), /"subject":"CN=localhost","issuer":"CN=pg-ambassador test CA"/);

  const none = new ListenerTlsMaterial({ minVersion: 'TLSv1.2' }, { log: h.log });
  assert.equal(none.current(), null);
  assert.equal(none.reload('SIGHUP'), false);
});

test('minVersion is in the secure contexts: TLSv1.3 refuses a TLSv1.2-only peer on either side', async (t) => {
  const h = harness(t);
  const { material } = listener(h, t, certsA, { minVersion: 'TLSv1.3' });
  const oldClient = tls.createSecureContext({ ca: readFileSync(certsA.caCert), maxVersion: 'TLSv1.2' });
  await assert.rejects(handshake(material.current()!, oldClient), /protocol version|unsupported protocol/i);
  const client = upstream(h, t, { ca: certsA.caCert }, false, 'TLSv1.3').current();
  assert.equal(await handshake(material.current()!, client), fingerprint(certsA.serverCert));
  const oldServer = tls.createSecureContext({ cert: readFileSync(certsA.serverCert), key: readFileSync(certsA.serverKey), maxVersion: 'TLSv1.2' });
  await assert.rejects(handshake(oldServer, client), /protocol version|unsupported protocol/i);
  assert.equal(await handshake(oldServer, upstream(h, t, { ca: certsA.caCert }, false).current()), fingerprint(certsA.serverCert));
});

test('a rewritten certificate and key are swapped in; the next handshake presents the new certificate', async (t) => {
  const h = harness(t);
  const { material, cert, key } = listener(h, t, certsA);
  const before = material.current();
  const reloaded = h.next('tls-reloaded');
  writeFileSync(key, readFileSync(certsB.serverKey));
  writeFileSync(cert, readFileSync(certsB.serverCert));
  const event = await reloaded;
  assert.equal(event.scope, 'listen');
  assert.notEqual(material.current(), before);
  assert.equal(await handshake(material.current()!, upstream(h, t, { ca: certsB.caCert }).current()), fingerprint(certsB.serverCert));
  const line = h.logText().split('\n').find((l) => l.includes('"msg":"TLS material reloaded"'));
  assert.ok(line, 'a reload log line');
  assert.match(line, /"issuer":"CN=pg-ambassador test CA","serialNumber":"[0-9A-F]+","notBefore":"[^"]+","notAfter":"[^"]+"/);
});

test('a key that does not match its certificate keeps the old material, reports tls-reload-failed, logs no key; a later good write recovers', async (t) => {
  const h = harness(t);
  const { material, cert, key } = listener(h, t, certsA);
  const before = material.current();
  const failed = h.next('tls-reload-failed');
  writeAtomic(key, readFileSync(certsB.serverKey));
  const event = await failed;
  assert.ok(event.type === 'tls-reload-failed');
  assert.deepEqual(event.files, [key]);
  assert.match(event.error, /listen\.tls\.key .*: the key does not match the certificate in .*tls\.crt \(listen\.tls\.cert\)/);
  assert.equal(material.current(), before);
  const clientA = upstream(h, t, { ca: certsA.caCert }).current();
  assert.equal(await handshake(material.current()!, clientA), fingerprint(certsA.serverCert));
  assert.match(h.logText(), /"level":40.*"file":"[^"]*tls\.key".*"msg":"TLS material not reloaded; keeping the current one"/);
  for (const keyFile of [certsA.serverKey, certsB.serverKey]) {
    const body = readFileSync(keyFile, 'utf8').split('\n').filter((l) => l && !l.startsWith('-----'));
    for (const line of body) assert.ok(!h.logText().includes(line) && !event.error.includes(line), 'no key material in logs or events');
  }

  const reloaded = h.next('tls-reloaded');
  writeAtomic(cert, readFileSync(certsB.serverCert));
  assert.deepEqual((await reloaded).files, [cert, key], 'both differ from the material in use');
  assert.equal(await handshake(material.current()!, upstream(h, t, { ca: certsB.caCert }).current()), fingerprint(certsB.serverCert));
});

test('a truncated PEM (a lone certificate, or the last of a bundle) keeps the old CA; the completed write is picked up', async (t) => {
  const h = harness(t);
  const ca = copy(certsA.caCert, h.dir, 'ca.crt');
  const material = upstream(h, t, { ca });
  const before = material.current();
  const pemB = readFileSync(certsB.caCert, 'utf8');
  const half = pemB.slice(0, Math.floor(pemB.length / 2));

  let failed = h.next('tls-reload-failed');
  writeAtomic(ca, half);
  assert.match((await failed as { error: string }).error, /upstream\.tls\.ca .*ca\.crt\): the certificate is cut short/);
  failed = h.next('tls-reload-failed');
  writeAtomic(ca, readFileSync(certsA.caCert, 'utf8') + half);
  assert.match((await failed as { error: string }).error, /certificate 2 is cut short/);
  assert.equal(material.current(), before);

  const reloaded = h.next('tls-reloaded');
  writeAtomic(ca, pemB);
  await reloaded;
  assert.ok(holds(material.current().ca, certsB.caCert));
  const serverB = new ListenerTlsMaterial({ cert: certsB.serverCert, key: certsB.serverKey, minVersion: 'TLSv1.2' }, { log: h.log, watch: false });
  assert.equal(await handshake(serverB.current()!, material.current()), fingerprint(certsB.serverCert));
  await assert.rejects(handshake(serverB.current()!, before), /self[- ]signed|unable to (get|verify)/i);
});

test('a Kubernetes secret swap (..data symlink renamed over) is seen and swaps all three files', async (t) => {
  const h = harness(t);
  const writeVersion = (name: string, certs: ClusterCerts): void => {
    mkdirSync(path.join(h.dir, name));
    copy(certs.caCert, path.join(h.dir, name), 'ca.crt');
    copy(certs.clientCert, path.join(h.dir, name), 'tls.crt');
    copy(certs.clientKey, path.join(h.dir, name), 'tls.key');
  };
  writeVersion('..2026_11_23_10_00_00.1', certsA);
  symlinkSync('..2026_11_23_10_00_00.1', path.join(h.dir, '..data'));
  for (const name of ['ca.crt', 'tls.crt', 'tls.key']) symlinkSync(`..data/${name}`, path.join(h.dir, name));
  const files = { ca: path.join(h.dir, 'ca.crt'), cert: path.join(h.dir, 'tls.crt'), key: path.join(h.dir, 'tls.key') };
  const material = upstream(h, t, files);
  assert.ok(holds(material.current().cert, certsA.clientCert));

  const reloaded = h.next('tls-reloaded');
  writeVersion('..2026_11_23_11_00_00.2', certsB);
  symlinkSync('..2026_11_23_11_00_00.2', path.join(h.dir, '..data_tmp'));
  renameSync(path.join(h.dir, '..data_tmp'), path.join(h.dir, '..data'));
  rmSync(path.join(h.dir, '..2026_11_23_10_00_00.1'), { recursive: true });
  assert.deepEqual([...(await reloaded).files].sort(), Object.values(files).sort());
  const now = material.current();
  assert.ok(holds(now.ca, certsB.caCert) && holds(now.cert, certsB.clientCert) && holds(now.key, certsB.clientKey));
});

test('reload() re-reads at once: true and a new object on a change, false when unchanged or bad', async (t) => {
  const h = harness(t);
  const ca = copy(certsA.caCert, h.dir, 'ca.crt');
  const material = upstream(h, t, { ca }, false);
  const before = material.current();
  writeAtomic(ca, readFileSync(certsB.caCert));
  assert.equal(material.reload('SIGHUP'), true);
  const after = material.current();
  assert.notEqual(after, before);
  assert.ok(holds(after.ca, certsB.caCert));
  assert.deepEqual(h.events, [{ type: 'tls-reloaded', scope: 'upstream', files: [ca] }]);
  assert.equal(material.reload('POST /reload'), false);
  assert.equal(material.current(), after);
  writeAtomic(ca, 'not a certificate\n');
  assert.equal(material.reload('SIGHUP'), false);
  assert.equal(material.current(), after);
  assert.equal(h.events.at(-1)?.type, 'tls-reload-failed');
  assert.equal(h.events.length, 2);
});

test('unreadable or invalid files at construction throw a ConfigError naming the key and the file', (t) => {
  const h = harness(t);
  const missing = path.join(h.dir, 'nope', 'ca.crt');
  assert.throws(() => upstream(h, t, { ca: missing }), (err: unknown) =>
    err instanceof ConfigError && err.keyPath === 'upstream.tls.ca' && err.message === `upstream.tls.ca: ${missing}: cannot read the file: ENOENT`);
  const empty = path.join(h.dir, 'empty.crt');
  writeFileSync(empty, '');
  assert.throws(() => upstream(h, t, { ca: certsA.caCert, cert: empty, key: certsA.clientKey }), (err: unknown) =>
    err instanceof ConfigError && err.keyPath === 'upstream.tls.cert' && /no PEM certificate in the file/.test(err.message));
  assert.throws(() => new ListenerTlsMaterial({ cert: certsA.serverCert, key: certsB.serverKey, minVersion: 'TLSv1.2' }, { log: h.log }), (err: unknown) =>
    err instanceof ConfigError && err.keyPath === 'listen.tls.key' && /does not match the certificate/.test(err.message));
  assert.throws(() => new ListenerTlsMaterial({ cert: certsA.serverCert, key: certsA.serverCert, minVersion: 'TLSv1.2' }, { log: h.log }), (err: unknown) =>
    err instanceof ConfigError && err.keyPath === 'listen.tls.key' && /not a usable unencrypted PEM private key/.test(err.message));
});

test('an expired or not-yet-valid certificate is loaded and swapped in, with a warning', async (t) => {
  const h = harness(t);
  const future = new ListenerTlsMaterial({ cert: futureCertA, key: certsA.serverKey, minVersion: 'TLSv1.2' }, { log: h.log, watch: false });
  assert.ok(future.current());
  assert.match(h.logText(), /"level":40.*"notBefore":"Jan  1 00:00:00 2099 GMT".*"state":"not yet valid"/);
  const { material, cert } = listener(h, t, certsA);
  const before = material.current();
  const reloaded = h.next('tls-reloaded');
  writeAtomic(cert, readFileSync(expiredCertA));
  await reloaded;
  assert.notEqual(material.current(), before, 'swapped in despite the warning');
  assert.match(h.logText(), /"level":40.*"notAfter":"Jan  2 00:00:00 2020 GMT".*"state":"expired".*"msg":"TLS certificate expired"/);
});

test('TcpConnector handshakes with the settings’ secure context, which wins over the ca field', async (t) => {
  const h = harness(t);
  const { material } = listener(h, t, certsA);
  const server = net.createServer((plain) => {
    plain.once('data', () => { // the SSLRequest
      plain.write('S');
      new tls.TLSSocket(plain, { isServer: true, secureContext: material.current()! }).on('error', () => plain.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const target = { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
  const { ca: _ca, ...contextOnly } = upstream(h, t, { ca: certsA.caCert }, false).current();
  const connected = await new TcpConnector().connect(target, contextOnly, 5000);
  assert.equal(connected.tls?.getPeerCertificate().fingerprint256, fingerprint(certsA.serverCert));
  connected.socket.destroy();
  const otherContext = { ...upstream(h, t, { ca: certsA.caCert }, false).current(), secureContext: upstream(h, t, { ca: certsB.caCert }, false).current().secureContext };
  await assert.rejects(new TcpConnector().connect(target, otherContext, 5000), /failed \(verify-full\)/);
});
