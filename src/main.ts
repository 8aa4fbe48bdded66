// Process entry: parses argv, loads the config, starts the ambassador, and maps signals and
// failures to exit codes.
//
// Exit codes: 0 clean exit (graceful shutdown after SIGTERM, SIGINT or POST /quitquitquit),
// 1 invalid config (at start), 2 bad command line, 3 could not start (port taken, unreadable TLS
// material, ...), 4 the shutdown itself failed, 130 a second SIGTERM/SIGINT during the drain.
// Signals: SIGTERM drains after shutdown.acceptGrace (Kubernetes), SIGINT drains at once,
// SIGHUP reloads the config file, credentials and TLS material.
// `probe` (container health checks) exits 0 when the admin endpoint answers 200, 1 otherwise.

import { Command, CommanderError } from 'commander';
import { createRequire } from 'node:module';
import { probe, PROBE_ENDPOINTS, type ProbeEndpoint } from './admin/probe.ts';
import type { Ambassador } from './app.ts';
import { formatConfig, loadConfig, type Config } from './config/index.ts';
import { ConfigError } from './errors.ts';

const EXIT_CONFIG = 1;
const EXIT_USAGE = 2;
const EXIT_START = 3;
const EXIT_SHUTDOWN_FAILED = 4;
const EXIT_INTERRUPTED = 130;

const version = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

interface RunFlags {
  config?: string;
  host?: string;
  port?: string;
  logLevel?: string;
}

function configFile(flags: { config?: string }): string | undefined {
  return flags.config ?? (process.env.PG_AMBASSADOR_CONFIG || undefined);
}

function load(flags: RunFlags): Config {
  const overrides: Record<string, unknown> = {};
  if (flags.host !== undefined || flags.port !== undefined) {
    overrides.listen = { ...(flags.host !== undefined ? { host: flags.host } : {}), ...(flags.port !== undefined ? { port: flags.port } : {}) };
  }
  if (flags.logLevel !== undefined) overrides.logging = { level: flags.logLevel };
  return loadConfig({ file: configFile(flags), env: process.env, flags: overrides as never });
}

function fail(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`pg-ambassador: invalid configuration: ${err.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  const e = err as Error & { hint?: string };
  process.stderr.write(`pg-ambassador: ${e.message ?? String(err)}\n${e.hint ? `hint: ${e.hint}\n` : ''}`);
  process.exit(EXIT_START);
}

/**
 * Exits the process after a graceful shutdown (SIGTERM with shutdown.acceptGrace first; SIGINT
 * and POST /quitquitquit without). A second signal during the drain exits at once.
 */
export function exitAfterShutdown(getAmbassador: () => Ambassador | null, extraCleanup: () => Promise<void> = async () => {}): (why: string, acceptGrace: boolean) => void {
  let first: string | null = null;
  return (why, acceptGrace) => {
    const ambassador = getAmbassador();
    if (ambassador === null) process.exit(0);
    if (first !== null) {
      if (why === 'POST /quitquitquit') return;
      // Kubernetes sends SIGTERM right after a preStop hook that called /quitquitquit: that is
      // the same request, not an operator insisting.
      if (first === 'POST /quitquitquit' && why === 'SIGTERM') return void ambassador.logger.info('SIGTERM during the drain /quitquitquit started: draining on');
      ambassador.logger.warn({ signal: why }, 'second signal: exiting now');
      process.exit(EXIT_INTERRUPTED);
    }
    first = why;
    ambassador.logger.info({ why }, 'shutting down');
    ambassador
      .shutdown({ acceptGrace })
      .then(extraCleanup)
      .then(() => ambassador.logger.flush?.())
      .then(() => process.exit(0))
      .catch((err) => {
        ambassador.logger.error({ err: String(err) }, 'shutdown failed');
        process.exit(EXIT_SHUTDOWN_FAILED);
      });
  };
}

/** Graceful shutdown on SIGTERM/SIGINT, reload on SIGHUP. */
export function handleSignals(ambassador: Ambassador, exit: (why: string, acceptGrace: boolean) => void = exitAfterShutdown(() => ambassador)): void {
  process.on('SIGTERM', () => exit('SIGTERM', true));
  process.on('SIGINT', () => exit('SIGINT', false));
  onReloadSignal(ambassador);
}

/** SIGHUP re-reads the config file, credentials and TLS material; returns a function that stops listening. */
export function onReloadSignal(ambassador: Ambassador): () => void {
  const onHup = (): void => {
    ambassador.logger.info('SIGHUP received: reloading');
    ambassador
      .reload('SIGHUP')
      .then((report) => ambassador.logger.info({ report }, 'reload finished'))
      .catch((err) => ambassador.logger.error({ err: String(err) }, 'reload failed'));
  };
  process.on('SIGHUP', onHup);
  return () => process.off('SIGHUP', onHup);
}

async function run(flags: RunFlags): Promise<void> {
  let config: Config;
  try {
    config = load(flags);
  } catch (err) {
    fail(err);
  }
  let ambassador: Ambassador | null = null;
  const exit = exitAfterShutdown(() => ambassador);
  try {
    // Loaded here, so check-config and probe (a health check run every few seconds) stay light.
    const { startAmbassador } = await import('./app.ts');
    ambassador = await startAmbassador(config, {
      reloadConfig: () => load(flags),
      configFile: configFile(flags),
      quit: (why) => exit(why, false),
    });
    handleSignals(ambassador, exit);
  } catch (err) {
    fail(err);
  }
}

function checkConfig(flags: { config?: string }): void {
  try {
    const config = loadConfig({ file: configFile(flags), env: process.env });
    process.stdout.write(formatConfig(config));
    process.stderr.write(`${flags.config ?? 'environment'}: configuration is valid\n`);
  } catch (err) {
    fail(err);
  }
}

async function probeCommand(endpoint: string, flags: { config?: string; timeout: string }): Promise<void> {
  const timeoutMs = Number(flags.timeout);
  if (!PROBE_ENDPOINTS.includes(endpoint as never) || !Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    process.stderr.write(`pg-ambassador probe: expected ${PROBE_ENDPOINTS.join(' | ')} and a positive --timeout in ms\n`);
    process.exit(EXIT_USAGE);
  }
  let config: Config;
  try {
    config = loadConfig({ file: configFile(flags), env: process.env });
  } catch (err) {
    fail(err);
  }
  const result = await probe(config, endpoint as ProbeEndpoint, timeoutMs);
  (result.ok ? process.stdout : process.stderr).write(`${result.summary}\n`);
  process.exit(result.ok ? 0 : 1);
}

export function buildCli(): Command {
  const program = new Command('pg-ambassador')
    .enablePositionalOptions()
    .description('PostgreSQL wire-protocol ambassador: connect to it as if it were Postgres on localhost')
    .version(version, '-v, --version')
    .option('-c, --config <file>', 'YAML config file (default: $PG_AMBASSADOR_CONFIG, else environment variables alone)')
    .option('--host <host>', 'listen address (overrides listen.host)')
    .option('-p, --port <port>', 'listen port (overrides listen.port)')
    .option('--log-level <level>', 'trace | debug | info | warn | error (overrides logging.level)')
    .action((flags: RunFlags) => run(flags));
  program
    .command('check-config')
    .description('validate a config and print the effective configuration, secrets redacted')
    .option('-c, --config <file>', 'YAML config file (without one: environment variables alone)')
    .action((flags: { config?: string }, cmd: Command) => checkConfig({ config: flags.config ?? cmd.parent?.opts().config }));
  program
    .command('route')
    .description('print how a statement would be routed (primary or replica) and why')
    .argument('<sql>', 'the SQL text, as a client would send it')
    .action(async (sql: string) => {
      const { createClassifier, describeClassification, EMPTY_FUNCTION_CATALOG } = await import('./router/classifier.ts');
      // Without a live catalog, user-defined functions count as writing (as before the
      // primary's pg_proc is loaded): the answer errs toward the primary.
      const classification = (await createClassifier({ functions: EMPTY_FUNCTION_CATALOG })).classify(sql);
      process.stdout.write(`${classification.route === 'read' ? 'replica' : 'primary'}: ${describeClassification(classification)}\n`);
    });
  program
    .command('probe')
    .description('ask the running ambassador\'s admin server for /livez, /readyz or /startupz (container health checks): exit 0 on 200, else 1')
    .argument('[endpoint]', PROBE_ENDPOINTS.join(' | '), 'livez')
    .option('-c, --config <file>', 'YAML config file the ambassador runs with (default: $PG_AMBASSADOR_CONFIG, else environment variables alone)')
    .option('--timeout <ms>', 'how long to wait for the answer', '3000')
    .action(async (endpoint: string, flags: { config?: string; timeout: string }, cmd: Command) => {
      await probeCommand(endpoint, { config: flags.config ?? cmd.parent?.opts().config, timeout: flags.timeout });
    });
  program
    .command('demo')
    .description('start a local primary + replica and the ambassador in front of them')
    .option('-p, --port <port>', 'ambassador listen port', '5432')
    .action(async (flags: { port: string }) => {
      const { runDemo } = await import('./demo/run.ts');
      await runDemo({ port: Number(flags.port) });
    });
  program.exitOverride();
  return program;
}

const isEntry = process.argv[1] !== undefined && /main\.(ts|js)$/.test(process.argv[1]);
if (isEntry || process.argv[1]?.endsWith('pg-ambassador') || process.argv[1]?.endsWith('pg-ambassador.js')) {
  buildCli()
    .parseAsync(process.argv)
    .catch((err: unknown) => {
      if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
      fail(err);
    });
}
