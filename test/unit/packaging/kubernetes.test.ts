// The Kubernetes manifests in config/kubernetes, checked without a cluster: each object against
// the Kubernetes API schema (kubernetes-models), and the facts that break a deployment: the
// sidecar is native (initContainers, restartPolicy Always), its ports and probes are the ones the
// config it loads opens, every variable it is given is one the ambassador reads, the config
// loads with the manifests' environment and mounts, the grace period covers the drain, the IAM
// variants match the ServiceAccount. test/integration/packaging.test.ts runs the same config.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ENVIRONMENT_VARIABLES, parseConfigText, type Config } from '../../../src/config/index.ts';
import { regionOfRdsHost } from '../../../src/credentials/aws-rds-iam.ts';
import { startupWarnings } from '../../../src/startup-warnings.ts';
import { instructionsOf, readDockerfile } from '../../support/dockerfile.ts';
import {
  containerNamed,
  findObject,
  isMountedFile,
  mountedFiles,
  podSpecOf,
  readManifestFiles,
  resolveEnv,
  type Container,
  type K8sObject,
  type PodSpec,
  type Probe,
} from '../../support/manifests.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const files = readManifestFiles();
const base = files.filter((file) => !file.file.startsWith('iam/')).flatMap((file) => file.objects);
const SIDECAR = 'pg-ambassador';
const deployment = findObject(base, 'Deployment', 'orders-api');
const job = findObject(base, 'Job', 'orders-migrate');

/** The config the ambassador container loads: PG_AMBASSADOR_CONFIG, found in its mounts, with its env. */
function sidecarConfig(pod: PodSpec, objects: readonly K8sObject[]): { config: Config; env: Record<string, string>; text: string } {
  const container = containerNamed(pod, SIDECAR);
  const env = resolveEnv(container, objects);
  const file = env.PG_AMBASSADOR_CONFIG;
  assert.ok(file, 'the sidecar names its config file in PG_AMBASSADOR_CONFIG');
  const mount = mountedFiles(pod, container, objects).find((volume) => path.dirname(file) === volume.mountPath);
  const text = mount?.files[path.basename(file)];
  assert.ok(text, `${file} is a file of one of the sidecar's mounts`);
  return { config: parseConfigText(text, { file, env }), env, text };
}

function portNumber(container: Container, port: number | string): number | undefined {
  return typeof port === 'number' ? port : container.ports?.find((entry) => entry.name === port)?.containerPort;
}

test('every manifest is valid against the Kubernetes API schema', async () => {
  const kinds = files.flatMap((file) => file.objects.map((object) => `${object.kind}/${object.metadata.name}`));
  for (const expected of ['Deployment/orders-api', 'Job/orders-migrate', 'ConfigMap/pg-ambassador-config', 'Secret/pg-ambassador-credentials', 'ServiceAccount/orders-api']) {
    assert.ok(kinds.includes(expected), `${expected} is shipped`);
  }
  for (const { file, objects } of files) {
    for (const object of objects) {
      const module = (await import(`kubernetes-models/${object.apiVersion}/${object.kind}`)) as Record<string, new (data: unknown) => { validate(): void }>;
      const Model = module[object.kind]!;
      assert.doesNotThrow(() => new Model(object).validate(), `${file}: ${object.kind} ${object.metadata.name}`);
    }
  }
  // The schema check is real: a wrong type is refused.
  const { Deployment } = await import('kubernetes-models/apps/v1/Deployment');
  const broken = structuredClone(deployment) as K8sObject & { spec: { replicas: unknown } };
  broken.spec.replicas = 'two';
  assert.throws(() => new Deployment(broken as never).validate(), /replicas/);
});

test('the ambassador is a native sidecar of the Deployment: an init container with restartPolicy Always', () => {
  const pod = podSpecOf(deployment);
  const sidecar = pod.initContainers?.find((container) => container.name === SIDECAR);
  assert.ok(sidecar, 'pg-ambassador is under initContainers');
  assert.equal(sidecar.restartPolicy, 'Always');
  assert.ok(!pod.containers.some((container) => container.name === SIDECAR));
  assert.ok(pod.containers.length > 0, 'next to an application container');
});

for (const workload of [deployment, job]) {
  const pod = podSpecOf(workload);
  const name = `${workload.kind} ${workload.metadata.name}`;

  test(`${name}: container ports and probes are the ones the loaded config opens`, () => {
    const { config } = sidecarConfig(pod, base);
    const sidecar = containerNamed(pod, SIDECAR);
    assert.equal(portNumber(sidecar, 'postgres'), config.listen.port);
    assert.equal(portNumber(sidecar, 'admin'), config.admin.port);
    const probes: [string, Probe | undefined, string][] = [
      ['startupProbe', sidecar.startupProbe, '/startupz'],
      ['readinessProbe', sidecar.readinessProbe, '/readyz'],
      ['livenessProbe', sidecar.livenessProbe, '/livez'],
    ];
    for (const [kind, probe, expectedPath] of probes) {
      if (kind === 'startupProbe' && workload.kind === 'Job') continue; // an ordinary container there
      assert.ok(probe?.httpGet, `${kind} is an HTTP probe`);
      assert.equal(probe.httpGet.path, expectedPath, kind);
      assert.equal(portNumber(sidecar, probe.httpGet.port), config.admin.port, `${kind} goes to the admin port`);
    }
    // The kubelet probes the pod IP, so the admin server listens beyond loopback; clients are local.
    assert.ok(['0.0.0.0', '::'].includes(config.admin.host), `admin.host ${config.admin.host} is reachable by the kubelet`);
    assert.equal(config.listen.host, '127.0.0.1');
  });

  test(`${name}: every variable given to the ambassador is one it reads`, () => {
    const { text } = sidecarConfig(pod, base);
    const interpolated = [...text.matchAll(/\$\{(\w+)/g)].map((match) => match[1]!);
    const known = new Set([...ENVIRONMENT_VARIABLES, 'PG_AMBASSADOR_CONFIG', ...interpolated]);
    for (const variable of containerNamed(pod, SIDECAR).env ?? []) {
      assert.ok(known.has(variable.name), `${variable.name} is read by the ambassador`);
    }
  });

  test(`${name}: the config loads with the manifests' environment and mounts`, () => {
    const { config } = sidecarConfig(pod, base);
    const secret = findObject(base, 'Secret', 'pg-ambassador-credentials');
    assert.equal(config.admin.token, secret.stringData?.['admin-token'], 'ADMIN_TOKEN from the Secret is the admin token');
    assert.equal(config.upstream.credentials?.type, 'file');
    const mounts = mountedFiles(pod, containerNamed(pod, SIDECAR), base);
    assert.ok(config.upstream.credentials?.type === 'file' && isMountedFile(mounts, config.upstream.credentials.path), 'the password file is mounted');
    assert.ok(isMountedFile(mounts, config.upstream.tls.ca), 'the CA file is mounted');
    assert.equal(config.upstream.tls.mode, 'verify-full');
    assert.equal(config.pool.mode, 'transaction');
    assert.ok(config.upstream.user && config.upstream.database, '/readyz can log in before any client: upstream.user and database are set');
    assert.deepEqual(startupWarnings(config), [], 'no open door: trust only on loopback, the admin endpoint guarded by a token');
  });

  test(`${name}: terminationGracePeriodSeconds covers the ambassador's drain`, () => {
    const { config } = sidecarConfig(pod, base);
    const drainSeconds = (config.shutdown.timeout + config.shutdown.acceptGrace) / 1000;
    assert.ok(pod.terminationGracePeriodSeconds !== undefined && pod.terminationGracePeriodSeconds > drainSeconds, `${pod.terminationGracePeriodSeconds} s > ${drainSeconds} s`);
  });

  test(`${name}: the sidecar runs this version's image as the image's non-root user, within limits`, () => {
    const sidecar = containerNamed(pod, SIDECAR);
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(sidecar.image.split(':').at(-1), version);
    const runtime = readDockerfile(path.join(ROOT, 'Dockerfile')).stages.at(-1)!;
    const user = instructionsOf(runtime, 'USER').at(-1)!.args[0]!;
    assert.equal(String(sidecar.securityContext?.runAsUser), user.split(':')[0]);
    assert.equal(sidecar.securityContext?.readOnlyRootFilesystem, true);
    for (const resource of ['cpu', 'memory']) {
      assert.ok(sidecar.resources?.requests?.[resource], `requests.${resource}`);
      assert.ok(sidecar.resources?.limits?.[resource], `limits.${resource}`);
    }
  });
}

test('the application reaches the database at the sidecar listen address', () => {
  const pod = podSpecOf(deployment);
  const { config } = sidecarConfig(pod, base);
  const url = new URL(resolveEnv(containerNamed(pod, 'app'), base).DATABASE_URL!);
  assert.equal(url.hostname, config.listen.host);
  assert.equal(Number(url.port), config.listen.port);
});

test('the Job ends the ambassador with POST /quitquitquit on the admin port, with the admin token', () => {
  const pod = podSpecOf(job);
  assert.ok(['Never', 'OnFailure'].includes(pod.restartPolicy ?? ''));
  const { config } = sidecarConfig(pod, base);
  const main = containerNamed(pod, 'migrate');
  const script = [...(main.command ?? []), ...(main.args ?? [])].join('\n');
  assert.match(script, /trap quit_ambassador EXIT/);
  assert.match(script, /POST \/quitquitquit/);
  const env = resolveEnv(main, base);
  assert.equal(Number(env.ADMIN_PORT), config.admin.port);
  assert.equal(env.ADMIN_TOKEN, config.admin.token);
  assert.equal(Number(env.PGPORT), config.listen.port);
  assert.equal(env.PGHOST, config.listen.host);
});

const IAM: Record<string, { type: string; annotation: string }> = {
  'iam/aws-rds-iam.yaml': { type: 'aws-rds-iam', annotation: 'eks.amazonaws.com/role-arn' },
  'iam/gcp-cloudsql-iam.yaml': { type: 'gcp-cloudsql-iam', annotation: 'iam.gke.io/gcp-service-account' },
  'iam/azure-ad.yaml': { type: 'azure-ad', annotation: 'azure.workload.identity/client-id' },
};

test('each IAM variant replaces the ConfigMap and matches the ServiceAccount the Deployment runs as', () => {
  const variants = files.filter((file) => file.file.startsWith('iam/'));
  assert.deepEqual(variants.map((file) => file.file).sort(), Object.keys(IAM).sort());
  const pod = podSpecOf(deployment);
  const account = findObject(base, 'ServiceAccount', pod.serviceAccountName!);
  for (const variant of variants) {
    const expected = IAM[variant.file]!;
    const objects = [...base.filter((object) => object.kind !== 'ConfigMap'), ...variant.objects];
    const { config } = sidecarConfig(pod, objects);
    assert.equal(config.upstream.credentials?.type, expected.type, variant.file);
    assert.match(config.upstream.tls.mode, /^verify-/, `${variant.file}: tokens only to a verified server`);
    if (config.upstream.tls.ca !== undefined) {
      assert.ok(isMountedFile(mountedFiles(pod, containerNamed(pod, SIDECAR), objects), config.upstream.tls.ca), `${variant.file}: the CA file is mounted`);
    }
    assert.ok(account.metadata.annotations?.[expected.annotation], `${variant.file}: the ServiceAccount has ${expected.annotation}`);
    if (expected.type === 'aws-rds-iam') {
      for (const host of config.upstream.hosts) assert.ok(regionOfRdsHost(host.host), `${host.host}: the region comes from the endpoint name`);
    }
  }
  assert.equal(deployment.spec?.template?.metadata?.labels?.['azure.workload.identity/use'], 'true');
});
