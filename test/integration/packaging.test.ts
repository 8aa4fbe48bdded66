// The container image and the Kubernetes manifests, run for real without a Docker engine or a
// cluster: the Dockerfile's runtime stage is laid out from its COPY instructions (test/support/
// image.ts) and started with its ENTRYPOINT and ENV plus what the Deployment's and the Job's
// sidecar get (their env, the ConfigMap and Secret as mounted files), against the test cluster.
// Only the addresses differ: upstream hosts, the database and free ports instead of 5432/9187.
// - Deployment: every probe path answers 200 on the admin port, the image's HEALTHCHECK and the
//   compose health check pass, the app's DATABASE_URL works, ADMIN_TOKEN guards POST, no secret
//   in /config, SIGTERM (to tini, as in the container, when this machine has it: .ci/run installs
//   it) exits 0.
// - Job: the migrate container's own script runs its SQL through the ambassador, then POSTs
//   /quitquitquit, and the ambassador exits 0.

import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import YAML from 'yaml';
import { stageRuntimeImage, type StagedImage } from '../support/image.ts';
import { containerNamed, findObject, mountedFiles, podSpecOf, readManifestFiles, resolveEnv, type K8sObject, type Probe } from '../support/manifests.ts';
import { directConfig, dropTestDatabase, prepareTestDatabase, withClient } from '../support/pooling.ts';
import { ambassadorPath } from '../support/runtime-node.ts';
import { eventually, freePort, getTopology, type Topology } from '../support/topology.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const DB = 'pa_packaging';
const objects = readManifestFiles()
  .filter((file) => !file.file.startsWith('iam/'))
  .flatMap((file) => file.objects);
let topology: Topology;
let admin: pg.Client;
let image: StagedImage;
const started: RunningSidecar[] = [];

before(async () => {
  topology = await getTopology();
  admin = await prepareTestDatabase(topology, DB);
  image = await stageRuntimeImage();
});

after(async () => {
  for (const sidecar of started) await sidecar.stop();
  image?.remove();
  await admin?.end().catch(() => {});
  await dropTestDatabase(topology, DB).catch(() => {});
});

interface RunningSidecar {
  readonly env: Record<string, string>;
  readonly listenPort: number;
  readonly adminPort: number;
  /** A port as the manifests name it (5432, 9187) -> the one this run uses. */
  readonly port: (manifestPort: number) => number;
  readonly exited: Promise<number | null>;
  readonly output: () => string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts the staged image as the workload's pg-ambassador container: the Secret filled in the way
 * an operator would (the cluster's password and CA), mounts as directories, the config's
 * addresses pointed at the test cluster.
 */
async function runSidecar(workload: K8sObject): Promise<RunningSidecar> {
  const pod = podSpecOf(workload);
  const container = containerNamed(pod, 'pg-ambassador');
  const root = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-pod-'));
  const mounts = mountedFiles(pod, container, objects).map((mount, index) => ({ ...mount, dir: path.join(root, `mount${index}`) }));
  const remap = (text: string) => mounts.reduce((out, mount) => out.replaceAll(`${mount.mountPath}/`, `${mount.dir}/`), text);
  const secretFiles: Record<string, string> = { password: topology.users.app.password, 'ca.crt': readFileSync(topology.certs.caCert, 'utf8') };
  for (const mount of mounts) {
    mkdirSync(mount.dir);
    for (const [name, contents] of Object.entries(mount.files)) writeFileSync(path.join(mount.dir, name), secretFiles[name] ?? remap(contents));
  }
  const env: Record<string, string> = { ...image.env, ...resolveEnv(container, objects) };
  for (const [key, value] of Object.entries(env)) env[key] = remap(value);

  const doc = YAML.parseDocument(readFileSync(env.PG_AMBASSADOR_CONFIG!, 'utf8'));
  const manifestPorts = { listen: Number(doc.getIn(['listen', 'port'])), admin: Number(doc.getIn(['admin', 'port'])) };
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  const servers = [topology.primary, ...topology.replicas].map((server) => ({ host: server.host, port: server.port }));
  doc.setIn(['upstream', 'hosts'], doc.createNode(servers, { flow: true }));
  doc.setIn(['upstream', 'database'], DB);
  doc.setIn(['listen', 'port'], listenPort);
  doc.setIn(['admin', 'port'], adminPort);
  writeFileSync(env.PG_AMBASSADOR_CONFIG!, doc.toString());

  const [file, ...args] = image.command;
  const child = spawn(file!, args, { cwd: image.dir, env: { ...env, PATH: ambassadorPath() }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const sidecar: RunningSidecar = {
    env,
    listenPort,
    adminPort,
    port: (manifestPort) => {
      if (manifestPort === manifestPorts.listen) return listenPort;
      if (manifestPort === manifestPorts.admin) return adminPort;
      throw new Error(`port ${manifestPort} is neither listen.port nor admin.port of the ConfigMap`);
    },
    exited,
    output: () => output,
    process: child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
  started.push(sidecar);
  const startup = `http://127.0.0.1:${adminPort}/startupz`;
  await eventually(async () => ((await fetch(startup)).status === 200 ? true : undefined), { timeoutMs: 30_000, what: `${startup} (output: ${output})` });
  return sidecar;
}

/** GET a probe's httpGet on the port the manifest names (by name or number). */
async function requestProbe(sidecar: RunningSidecar, probe: Probe | undefined, workload: K8sObject): Promise<number> {
  assert.ok(probe?.httpGet);
  const container = containerNamed(podSpecOf(workload), 'pg-ambassador');
  const { port: named } = probe.httpGet;
  const manifestPort = typeof named === 'number' ? named : container.ports!.find((port) => port.name === named)!.containerPort;
  return (await fetch(`http://127.0.0.1:${sidecar.port(manifestPort)}${probe.httpGet.path}`)).status;
}

test("the image runs the Deployment's sidecar: probes, health checks, the app's connection, the admin token", async () => {
  const deployment = findObject(objects, 'Deployment', 'orders-api');
  const sidecar = await runSidecar(deployment);
  const container = containerNamed(podSpecOf(deployment), 'pg-ambassador');

  assert.equal(await requestProbe(sidecar, container.startupProbe, deployment), 200);
  assert.equal(await requestProbe(sidecar, container.livenessProbe, deployment), 200);
  // Ready once the health loop has seen the primary and a login upstream worked.
  await eventually(async () => ((await requestProbe(sidecar, container.readinessProbe, deployment)) === 200 ? true : undefined), { timeoutMs: 20_000, what: '/readyz 200' });

  // The image's probes run on its node too (sidecar.env has no PATH of its own).
  const probeEnv = { ...sidecar.env, PATH: ambassadorPath() };
  const healthcheck = await run(image.healthcheck[0]!, image.healthcheck.slice(1), { cwd: image.dir, env: probeEnv });
  assert.match(healthcheck.stdout, /^200 \/livez/);
  const compose = YAML.parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: { ambassador: { healthcheck: { test: string[] } } } };
  const [, composeFile, ...composeArgs] = compose.services.ambassador.healthcheck.test.map(image.hostPath);
  const ready = await run(composeFile!, composeArgs, { cwd: image.dir, env: probeEnv });
  assert.match(ready.stdout, /^200 \/readyz/);

  const url = new URL(resolveEnv(containerNamed(podSpecOf(deployment), 'app'), objects).DATABASE_URL!);
  url.port = String(sidecar.port(Number(url.port)));
  url.pathname = `/${DB}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    const { rows } = await client.query<{ user: string; db: string }>('SELECT current_user AS user, current_database() AS db');
    assert.deepEqual(rows, [{ user: 'app', db: DB }]);
  } finally {
    await client.end();
  }

  const token = sidecar.env.ADMIN_TOKEN!;
  const reloadUrl = `http://127.0.0.1:${sidecar.adminPort}/reload`;
  assert.equal((await fetch(reloadUrl, { method: 'POST' })).status, 401);
  assert.equal((await fetch(reloadUrl, { method: 'POST', headers: { authorization: `Bearer ${token}` } })).status, 200);
  const configUrl = `http://127.0.0.1:${sidecar.adminPort}/config`;
  assert.equal((await fetch(configUrl)).status, 401);
  const shown = await (await fetch(configUrl, { headers: { authorization: `Bearer ${token}` } })).text();
  assert.match(shown, /"upstream"/);
  for (const secret of [token, topology.users.app.password]) assert.ok(!shown.includes(secret) && !sidecar.output().includes(secret), 'no secret in /config or the logs');
  assert.doesNotMatch(sidecar.output(), /"level":"(warn|error|fatal)"/, 'the shipped config starts without warnings');

  sidecar.process.kill('SIGTERM');
  assert.equal(await sidecar.exited, 0);
});

test("the Job's migrate script works through the ambassador and ends it with /quitquitquit", async () => {
  await withClient(directConfig(topology, DB), async (client) => {
    await client.query('CREATE TABLE orders (id int PRIMARY KEY, created_at timestamptz NOT NULL)');
    await client.query("INSERT INTO orders VALUES (1, now() - interval '3 years'), (2, now() - interval '2 years'), (3, now())");
  });
  const job = findObject(objects, 'Job', 'orders-migrate');
  const sidecar = await runSidecar(job);
  const migrate = containerNamed(podSpecOf(job), 'migrate');
  const env = resolveEnv(migrate, objects);
  env.PGPORT = String(sidecar.port(Number(env.PGPORT)));
  env.ADMIN_PORT = String(sidecar.port(Number(env.ADMIN_PORT)));
  env.PGDATABASE = DB;
  const [file, ...args] = [...(migrate.command ?? []), ...(migrate.args ?? [])];
  const result = await run(file!, args, { env: { ...env, PATH: ambassadorPath() } });
  assert.match(result.stdout, /migrate: done/);
  assert.match(result.stdout, /^HTTP\/1\.1 200/m, 'the ambassador accepted the quit request');
  assert.equal(await sidecar.exited, 0, 'the ambassador drained and exited 0');
  await withClient(directConfig(topology, DB), async (client) => {
    const { rows } = await client.query<{ archived: number; kept: number }>(
      'SELECT (SELECT count(*)::int FROM orders_archive) AS archived, (SELECT count(*)::int FROM orders) AS kept',
    );
    assert.deepEqual(rows, [{ archived: 2, kept: 1 }]);
  });
});
