// Test runner behind `npm test`:
//   node --import tsx scripts/run-tests.ts                 unit + integration
//   node --import tsx scripts/run-tests.ts unit            test/unit/**/*.test.ts
//   node --import tsx scripts/run-tests.ts integration     test/integration/**/*.test.ts
//   node --import tsx scripts/run-tests.ts FILE...         those files
// When an integration file is selected, one shared cluster (primary + 2 streaming replicas) is
// started first and described to the test processes in PG_AMBASSADOR_TOPOLOGY; it is always
// stopped afterwards, also on SIGINT/SIGTERM (forwarded to the test process). Exits with the
// test process's exit code. Missing Postgres binaries are a failure, never a silent skip.
// Secret scan (test/support/secrets.ts): the test processes capture what the ambassador wrote
// and served into a temporary directory, node --test writes a copy of its report there, and
// after the last file the run fails if any test secret (the fixed list, the cluster's passwords,
// the ones tests registered) appears in any of it; the report names the secret, never shows it.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startCluster, type LocalCluster } from '../src/demo/cluster.ts';
import { findPgBinaries, PG_BINARIES_LOOKUP_ORDER } from '../src/demo/pg-binaries.ts';
import { IMAGE_NODE_ENV } from '../test/support/runtime-node.ts';
import {
  clusterSecrets,
  describeFinding,
  fixedSecrets,
  registeredSecrets,
  scanForSecrets,
  SECRET_SCAN_DIR_ENV,
  type NamedSecret,
} from '../test/support/secrets.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TOPOLOGY_ENV = 'PG_AMBASSADOR_TOPOLOGY';
/** Tells test/support/ambassador.ts that dist/ is fresh (keep in sync with BUILT_ENV there). */
const BUILT_ENV = 'PG_AMBASSADOR_BUILT';

function testFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...testFiles(full));
    else if (entry.isFile() && entry.name.endsWith('.test.ts')) found.push(full);
  }
  return found.sort();
}

function selectFiles(args: string[]): string[] {
  const unit = (): string[] => testFiles(path.join(root, 'test', 'unit'));
  const integration = (): string[] => testFiles(path.join(root, 'test', 'integration'));
  if (args.length === 0) return [...unit(), ...integration()];
  const files: string[] = [];
  for (const arg of args) {
    if (arg === 'unit') files.push(...unit());
    else if (arg === 'integration') files.push(...integration());
    else {
      const file = path.resolve(arg);
      if (!existsSync(file)) throw new Error(`test file not found: ${arg}`);
      files.push(file);
    }
  }
  return [...new Set(files)];
}

function isIntegration(file: string): boolean {
  return path.relative(path.join(root, 'test', 'integration'), file).split(path.sep)[0] !== '..';
}

async function startSharedCluster(): Promise<LocalCluster> {
  try {
    await findPgBinaries();
  } catch (error) {
    throw new Error(
      `integration tests need PostgreSQL server binaries and none were usable.\n` +
        `Lookup order: ${PG_BINARIES_LOOKUP_ORDER}.\n${(error as Error).message}`,
    );
  }
  const startedAt = Date.now();
  const cluster = await startCluster({ replicas: 2 });
  const ports = cluster.servers().map((server) => `${server.name}:${server.port}`).join(' ');
  process.stdout.write(
    `run-tests: shared cluster (PostgreSQL ${cluster.binaries.version}, ${cluster.binaries.source}) ` +
      `started in ${Date.now() - startedAt} ms: ${ports}\n`,
  );
  return cluster;
}

function build(): Promise<void> {
  const startedAt = Date.now();
  const tsc = spawn(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')], {
    cwd: root,
    stdio: 'inherit',
  });
  return new Promise((resolve, reject) => {
    tsc.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`npm run build failed (tsc exit ${code})`));
      process.stdout.write(`run-tests: built dist/ in ${Date.now() - startedAt} ms\n`);
      resolve();
    });
  });
}

/** Longest one test may take (the slowest take some 20 s); a test may set its own, shorter or longer. */
const TEST_TIMEOUT_MS = 300_000;

function runNodeTest(files: string[], env: NodeJS.ProcessEnv, reportCopy: string): Promise<number> {
  const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=spec', `--test-reporter-destination=${reportCopy}`];
  // A test that hangs fails after TEST_TIMEOUT_MS with its name, instead of holding the run (and
  // CI) until its own limit without saying where.
  const args = ['--import', 'tsx', '--test', ...reporters, '--test-concurrency=2', `--test-timeout=${TEST_TIMEOUT_MS}`, ...files];
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: 'inherit' });
  let received: NodeJS.Signals | undefined;
  const forward = (signal: NodeJS.Signals) => (): void => {
    received ??= signal;
    child.kill(signal);
  };
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  return new Promise((resolve) => {
    child.once('error', (error) => {
      process.stderr.write(`run-tests: could not start node --test: ${error.message}\n`);
      resolve(1);
    });
    child.once('exit', (code, signal) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      const bySignal = received ?? signal;
      resolve(bySignal ? 128 + os.constants.signals[bySignal] : code ?? 1);
    });
  });
}

/**
 * Fails (1) when a secret reached the captured output; the captures are then kept for a look.
 * Otherwise removes them and passes `code` on.
 */
function scanCaptures(dir: string, secrets: NamedSecret[], code: number): number {
  const startedAt = Date.now();
  const all = [...secrets, ...registeredSecrets(dir)];
  const findings = scanForSecrets(dir, all);
  const took = `${all.length} secrets, ${Date.now() - startedAt} ms`;
  if (findings.length === 0) {
    rmSync(dir, { recursive: true, force: true });
    process.stdout.write(`run-tests: secret scan: no test secret in any output (${took})\n`);
    return code;
  }
  process.stderr.write(`run-tests: secret scan FAILED (${took}): test secrets reached the output; captures kept in ${dir}\n`);
  for (const finding of findings) process.stderr.write(`  ${describeFinding(finding)}\n`);
  return code === 0 ? 1 : code;
}

async function main(): Promise<number> {
  const files = selectFiles(process.argv.slice(2));
  if (files.length === 0) {
    process.stderr.write('run-tests: no test files selected\n');
    return 1;
  }
  let cluster: LocalCluster | undefined;
  const captures = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-secret-scan-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, [SECRET_SCAN_DIR_ENV]: captures };
    const secrets = fixedSecrets();
    if (files.some(isIntegration)) {
      // Child-process tests run the production build (dist/): build it once, fresh, first.
      await build();
      env[BUILT_ENV] = '1';
      const imageNode = process.env[IMAGE_NODE_ENV];
      process.stdout.write(`run-tests: child ambassadors run on ${imageNode ? `${imageNode} (${IMAGE_NODE_ENV})` : `this node, ${process.version}`}\n`);
      cluster = await startSharedCluster();
      env[TOPOLOGY_ENV] = JSON.stringify(cluster.describe());
      secrets.push(...clusterSecrets(cluster.describe()));
    }
    const code = await runNodeTest(files, env, path.join(captures, 'node-test-report.txt'));
    return scanCaptures(captures, secrets, code);
  } catch (error) {
    rmSync(captures, { recursive: true, force: true });
    throw error;
  } finally {
    if (cluster) {
      const stoppedAt = Date.now();
      await cluster.stop();
      process.stdout.write(`run-tests: shared cluster stopped in ${Date.now() - stoppedAt} ms\n`);
    }
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`run-tests: ${(error as Error).message}\n`);
    process.exit(1);
  },
);
