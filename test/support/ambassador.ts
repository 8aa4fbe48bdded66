// Starting a real ambassador for integration tests, in front of the test topology.
// - startTestAmbassador: in-process, with captured log lines and an optional Connector wrapper
//   (e.g. counting upstream connections). Most tests use this.
// - spawnAmbassador: a child process running the real CLI, for RSS measurements and signals.
// Both take config as a plain object merged over a default that points at the topology's
// primary with scram client auth and verify-full upstream TLS.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import YAML from 'yaml';
import { TcpConnector, type Connector } from '../../src/backend/connector.ts';
import { startAmbassador, type Ambassador } from '../../src/app.ts';
import { loadConfig, parseConfigText } from '../../src/config/index.ts';
import { ambassadorNode } from './runtime-node.ts';
import { captureAtEnd, captureOutput, secretScanEnabled, TEST_SECRETS } from './secrets.ts';
import type { Topology } from './topology.ts';

/** The password clients use to log in to the ambassador in tests (not the upstream one). */
export const CLIENT_PASSWORD: string = TEST_SECRETS.clientPassword;

type ConfigObject = Record<string, unknown>;

/** Default test config: scram clients, the primary upstream as `app`, verify-full TLS. */
export function baseConfig(topology: Topology, overrides: ConfigObject = {}): ConfigObject {
  const base: ConfigObject = {
    listen: { host: '127.0.0.1', port: 0, loginTimeout: '5s' },
    clientAuth: { method: 'scram-sha-256', users: [{ name: 'app', password: CLIENT_PASSWORD }] },
    upstream: {
      hosts: [{ host: topology.primary.host, port: topology.primary.port, role: 'primary' }],
      credentials: { type: 'password', password: topology.users.app.password },
      tls: { mode: 'verify-full', ca: topology.certs.caCert, serverName: 'localhost' },
      connectTimeout: '5s',
    },
    shutdown: { timeout: '5s' },
    admin: { port: 0 },
    logging: { level: 'debug' },
  };
  return merge(base, overrides);
}

/** Deep merge; an object with a `type` discriminator (credentials) replaces the old one whole. */
function merge(base: ConfigObject, overrides: ConfigObject): ConfigObject {
  const out: ConfigObject = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    const current = out[key];
    const bothObjects =
      value && typeof value === 'object' && !Array.isArray(value) && !('type' in value) && current && typeof current === 'object' && !Array.isArray(current);
    out[key] = bothObjects ? merge(current as ConfigObject, value as ConfigObject) : value;
  }
  return out;
}

export interface TestAmbassador {
  ambassador: Ambassador;
  port: number;
  /** Every log line so far, parsed. */
  logs(): Array<Record<string, unknown>>;
  /** Raw log text so far (for secret scans). */
  logText(): string;
  /** Upstream connections opened so far. */
  upstreamConnects(): number;
  /** With fromFile: the config file. */
  configFile: string | undefined;
  /** With fromFile: rewrites the config file (overrides over the base config, or raw YAML text). */
  writeConfig(next: ConfigObject | string): void;
  stop(): Promise<void>;
}

export interface TestAmbassadorOptions {
  /** Runs from a config file (watched, re-read on reload); `configFile` and `writeConfig` are set. */
  fromFile?: boolean;
}

export async function startTestAmbassador(
  topology: Topology,
  overrides: ConfigObject = {},
  connector?: Connector,
  options: TestAmbassadorOptions = {},
): Promise<TestAmbassador> {
  const text0 = YAML.stringify(baseConfig(topology, overrides));
  let configFile: string | undefined;
  let dir: string | undefined;
  if (options.fromFile) {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-config-'));
    configFile = path.join(dir, 'ambassador.yaml');
    writeFileSync(configFile, text0);
  }
  const config = parseConfigText(text0, { file: configFile ?? 'test-config.yaml', env: {} });
  const sink = new PassThrough();
  let text = '';
  sink.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  const logger = pino({ level: config.logging.level, redact: { paths: ['password', '*.password'], censor: '[redacted]' } }, sink);
  let connects = 0;
  const inner = connector ?? new TcpConnector();
  const counting: Connector = {
    connect: (target, tls, timeout) => {
      connects++;
      return inner.connect(target, tls, timeout);
    },
  };
  const file = configFile;
  const ambassador = await startAmbassador(config, {
    logger,
    connector: counting,
    ...(file !== undefined ? { configFile: file, reloadConfig: () => loadConfig({ file, env: {} }) } : {}),
  });
  let stopped = false;
  const captureLogs = captureAtEnd(`logs of the ambassador on port ${ambassador.address.port}`, () => text);
  return {
    ambassador,
    port: ambassador.address.port,
    logText: () => text,
    logs: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    upstreamConnects: () => connects,
    configFile,
    writeConfig: (next) => {
      if (configFile === undefined) throw new Error('started without fromFile');
      writeFileSync(configFile, typeof next === 'string' ? next : YAML.stringify(baseConfig(topology, next)));
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await captureAdminPages(ambassador);
      await ambassador.shutdown();
      captureLogs();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** For the secret scan: what /metrics and /config serve just before the ambassador stops. */
async function captureAdminPages(ambassador: Ambassador): Promise<void> {
  if (!secretScanEnabled()) return;
  const { address, port, family } = ambassador.adminAddress;
  const host = family === 'IPv6' ? `[${address}]` : address;
  const token = ambassador.config().admin.token;
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  for (const page of ['/metrics', '/config']) {
    try {
      const res = await fetch(`http://${host}:${port}${page}`, { headers, signal: AbortSignal.timeout(2000) });
      captureOutput(`GET ${page} of the ambassador on port ${ambassador.address.port} (${res.status})`, await res.text());
    } catch {
      // already shut down (a test stopped it its own way): nothing to capture
    }
  }
}

export interface SpawnedAmbassador {
  process: ChildProcess;
  pid: number;
  port: number;
  configFile: string;
  output(): string;
  /** Resident set size of the ambassador process in bytes (from /proc). */
  rss(): number;
  /** Sends a signal and resolves with the exit code. */
  signal(sig: NodeJS.Signals): Promise<number | null>;
  /** Full collections in the child, resolved once done; only when spawned with `collectable`. */
  collectGarbage?(): Promise<void>;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

const ROOT = path.resolve(import.meta.dirname, '../..');
export const BUILT_ENV = 'PG_AMBASSADOR_BUILT';
let built: Promise<void> | undefined;

/**
 * Child-process tests run the production build (`node bin/pg-ambassador.js` -> dist/), so what
 * they measure (RSS, signals, exit codes) is what users run. The test runner builds once and sets
 * PG_AMBASSADOR_BUILT; a test file run on its own builds here, once per process.
 */
export function ensureBuilt(): Promise<void> {
  built ??= process.env[BUILT_ENV]
    ? Promise.resolve()
    : new Promise<void>((resolve, reject) => {
        const tsc = spawn(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' });
        tsc.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`build failed with exit code ${code}`))));
      });
  return built;
}

export interface SpawnOptions {
  /** Preloads collect-on-signal.mjs: the result gets collectGarbage() (for RSS figures). */
  collectable?: boolean;
}

const COLLECT_PRELOAD = path.join(import.meta.dirname, 'collect-on-signal.mjs');
/** The line collect-on-signal.mjs prints after collecting (not imported: importing would install its handler here). */
const COLLECTED_LINE = '{"test":"collected"}\n';

/** The child ambassadors a test file starts: each stopped by stop(), and whatever is still running by stopAll() (in after()). */
export class SpawnedAmbassadors {
  private readonly running = new Set<SpawnedAmbassador>();

  async start(topology: Topology, overrides: ConfigObject = {}, options: SpawnOptions = {}): Promise<SpawnedAmbassador> {
    const started = await spawnAmbassador(topology, overrides, options);
    this.running.add(started);
    return started;
  }

  async stop(ambassador: SpawnedAmbassador): Promise<void> {
    this.running.delete(ambassador);
    await ambassador.stop().catch(() => {});
  }

  async stopAll(): Promise<void> {
    for (const ambassador of [...this.running]) await this.stop(ambassador);
  }
}

let imageOptions: Promise<string[]> | undefined;

/** The image's options for `node` (test/support/dockerfile.ts), read once; the parser loads only here. */
function nodeOptionsOfImage(): Promise<string[]> {
  imageOptions ??= import('./dockerfile.ts').then(({ imageNodeOptions }) => imageNodeOptions());
  return imageOptions;
}

/** Runs the built `pg-ambassador --config <file>` as a child, as the image runs it (its Node options; its Node with PG_AMBASSADOR_IMAGE_NODE); resolves once it listens. */
export async function spawnAmbassador(topology: Topology, overrides: ConfigObject = {}, options: SpawnOptions = {}): Promise<SpawnedAmbassador> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-test-'));
  const configFile = path.join(dir, 'ambassador.yaml');
  writeFileSync(configFile, YAML.stringify(baseConfig(topology, overrides)));
  await ensureBuilt();
  const preload = options.collectable ? ['--expose-gc', '--import', pathToFileURL(COLLECT_PRELOAD).href] : [];
  const child = spawn(ambassadorNode(), [...(await nodeOptionsOfImage()), ...preload, path.join(ROOT, 'bin/pg-ambassador.js'), '--config', configFile], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PG_AMBASSADOR_CONFIG: '', NODE_OPTIONS: '' },
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const captureChildOutput = captureAtEnd(`output of the spawned ambassador (${configFile})`, () => output);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ambassador did not start: ${output}`)), 20_000);
    const onData = (): void => {
      const match = /"listen":"[^"]*:(\d+)"/.exec(output);
      if (match) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve(Number(match[1]));
      }
    };
    child.stdout!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`ambassador exited with ${code} before listening: ${output}`));
    });
  });
  const pid = child.pid!;
  /** Markers seen so far: a collection is done when the count passes what it was at the signal. */
  const collections = (): number => output.split(COLLECTED_LINE).length - 1;
  const collectGarbage = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const before = collections();
      const onData = (): void => {
        if (collections() === before) return;
        child.stdout!.off('data', onData);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        child.stdout!.off('data', onData);
        reject(new Error(`the spawned ambassador did not report a collection within 10 s: ${output.slice(-2000)}`));
      }, 10_000);
      child.stdout!.on('data', onData);
      child.kill('SIGUSR2');
    });
  return {
    process: child,
    ...(options.collectable ? { collectGarbage } : {}),
    pid,
    port,
    configFile,
    output: () => output,
    rss: () => {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
    },
    signal: async (sig) => {
      child.kill(sig);
      return exited;
    },
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      captureChildOutput();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Connection settings for a `pg` client talking to an ambassador. */
export function viaAmbassador(port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { host: '127.0.0.1', port, user: 'app', password: CLIENT_PASSWORD, database: 'app', ...extra };
}

/**
 * For test files that start several differently configured ambassadors: `start` creates one and
 * remembers it; `stopAll` (for after()) stops every one; `all` lists them (e.g. for log scans).
 */
export function ambassadorsFor(topology: () => Topology): {
  start(overrides: ConfigObject, connector?: Connector): Promise<TestAmbassador>;
  stopAll(): Promise<void>;
  all(): readonly TestAmbassador[];
} {
  const started: TestAmbassador[] = [];
  return {
    async start(overrides, connector) {
      const amb = await startTestAmbassador(topology(), overrides, connector);
      started.push(amb);
      return amb;
    },
    stopAll: async () => {
      await Promise.all(started.map((a) => a.stop()));
    },
    all: () => started,
  };
}
