// No secret in what the ambassador shows the world, and the scan that checks a whole run for
// them: an ambassador configured with every kind of secret (client and console passwords, the
// upstream password, the admin token) is driven through a session, a failed login, SHOW CONFIG,
// /metrics, /config and check-config, and none of it carries a secret (all of it is captured for
// the run's scan too); the scan itself finds planted secrets and names them without showing them.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import YAML from 'yaml';
import { ambassadorsFor, baseConfig, CLIENT_PASSWORD, ensureBuilt, viaAmbassador } from '../support/ambassador.ts';
import { assertStillServes } from '../support/hostile.ts';
import { captureOutput, clusterSecrets, describeFinding, fixedSecrets, scanForSecrets, TEST_SECRETS } from '../support/secrets.ts';
import { getTopology, type Topology } from '../support/topology.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
let topology: Topology;
const ambassadors = ambassadorsFor(() => topology);
const dirs: string[] = [];

before(async () => {
  topology = await getTopology();
});
after(async () => {
  await ambassadors.stopAll();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-security-'));
  dirs.push(dir);
  return dir;
}

/** The error a client sees for a login that must fail. */
async function failedLogin(port: number, extra: Record<string, unknown>): Promise<{ code?: string; message: string; hint?: string }> {
  const client = new pg.Client(viaAmbassador(port, extra) as pg.ClientConfig);
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    const { code, message, hint } = err as { code?: string; message: string; hint?: string };
    return { code, message, hint };
  } finally {
    await client.end().catch(() => {});
  }
  throw new Error('the login was expected to fail');
}

describe('no secret in what the ambassador shows', () => {
  test('client errors, /metrics, /config, SHOW CONFIG and check-config show none of the configured secrets', async () => {
    const overrides = {
      clientAuth: { method: 'scram-sha-256', users: [{ name: 'app', password: CLIENT_PASSWORD }, { name: 'ops', password: TEST_SECRETS.consolePassword }] },
      admin: { token: TEST_SECRETS.adminToken, users: ['ops'] },
    };
    const amb = await ambassadors.start(overrides);
    const secrets = [CLIENT_PASSWORD, TEST_SECRETS.consolePassword, TEST_SECRETS.adminToken, topology.users.app.password, TEST_SECRETS.wrongPassword];
    const shown: string[] = [];
    // a session, a wrong client password, and an admin console SHOW CONFIG
    await assertStillServes(amb.port);
    shown.push(JSON.stringify(await failedLogin(amb.port, { password: TEST_SECRETS.wrongPassword })));
    const showConfig = await run('psql', ['-X', '-A', '-t', '-w', '-c', 'SHOW CONFIG'], {
      env: { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(amb.port), PGUSER: 'ops', PGDATABASE: 'ambassador', PGPASSWORD: TEST_SECRETS.consolePassword, PGSSLMODE: 'disable' },
    });
    assert.match(showConfig.stdout, /admin\.token\|\[redacted\]/);
    shown.push(showConfig.stdout, showConfig.stderr);
    const admin = `http://127.0.0.1:${amb.ambassador.adminAddress.port}`;
    shown.push(await (await fetch(`${admin}/metrics`)).text());
    shown.push(await (await fetch(`${admin}/config`, { headers: { authorization: `Bearer ${TEST_SECRETS.adminToken}` } })).text());
    // check-config, the built CLI, on the same config
    const file = path.join(tempDir(), 'ambassador.yaml');
    writeFileSync(file, YAML.stringify(baseConfig(topology, overrides)));
    await ensureBuilt();
    const checked = await run(process.execPath, [path.join(ROOT, 'bin/pg-ambassador.js'), 'check-config', '--config', file], { env: { ...process.env, PG_AMBASSADOR_CONFIG: '' } });
    assert.match(checked.stdout, /token: "\[redacted\]"/);
    shown.push(checked.stdout, checked.stderr);
    shown.push(amb.logText());
    captureOutput('security-auth: client errors, /metrics, /config, SHOW CONFIG, check-config', shown.join('\n'));
    for (const [index, text] of shown.entries()) {
      for (const secret of secrets) assert.ok(!text.includes(secret), `output ${index} shows a secret`);
    }
  });

  test('the scan finds a planted secret in a capture and names it without printing it', () => {
    const dir = tempDir();
    const planted = [...fixedSecrets(), ...clusterSecrets(topology)];
    writeFileSync(path.join(dir, 'output-x.txt'), `\n=== clean\nnothing here\n\n=== leaky\nline\nfoo ${TEST_SECRETS.adminToken} bar\n`);
    writeFileSync(path.join(dir, 'report.txt'), `password=${topology.users.app.password}\ntoken ya29.${'0a'.repeat(24)}\n`);
    writeFileSync(path.join(dir, 'secrets-x.txt'), JSON.stringify({ name: 'registry', value: TEST_SECRETS.adminToken }));
    const findings = scanForSecrets(dir, planted);
    assert.deepEqual(
      findings.map((finding) => [finding.file, finding.label, finding.secret, finding.line]),
      [
        ['output-x.txt', 'leaky', 'TEST_SECRETS.adminToken', 7],
        ['report.txt', 'report.txt', 'cluster app password', 1],
        ['report.txt', 'report.txt', 'cloud-credentials GCP token', 2],
      ],
    );
    for (const finding of findings) {
      const line = describeFinding(finding);
      assert.ok(!planted.some((secret) => secret.value.length > 0 && line.includes(secret.value)), 'a finding shows no secret');
    }
    assert.deepEqual(scanForSecrets(tempDir(), planted), []);
  });
});
