// Upstream credentials. A CredentialProvider fetches the secret to log in upstream with, for one
// (host, port, user); the CredentialCache (cache.ts) decides when to fetch: ahead of expiry, on a
// watched change, on reload, after the server rejected a login. Connections ask the cache for the
// current value at each login and never hold one.
//
// This file holds the providers with no dependencies: a fixed password, an environment variable,
// a mounted file, a command. The cloud IAM providers live in their own modules, loaded (with
// their SDKs) only when configured.

import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { AmbassadorError } from '../errors.ts';
import { FileWatch } from '../lib/file-watch.ts';

/** The login a secret is for: token providers sign for exactly this host, port and user. */
export interface LoginTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
}

export interface Secret {
  password: string;
  /** When the secret stops being valid, if it expires (IAM tokens, exec output with expiresAt). */
  expiresAt?: Date | undefined;
}

export interface CredentialProvider {
  /** Names the provider in logs and metrics (the config's `type`); never includes the secret. */
  readonly kind: string;
  /**
   * Ops rotate this secret by changing its source (a file, a variable, what a command prints),
   * so after a rejected login a changed value may be moments away. False for fixed passwords and
   * for tokens (a fresh token is fetched once; waiting gives nothing).
   */
  readonly rotates: boolean;
  /** The secret is a short-lived token sent as the password: it must not cross the network unencrypted. */
  readonly token: boolean;
  /** Refresh this long before expiry (ms), when configured; otherwise at ~80% of the lifetime. */
  readonly refreshMarginMs?: number | undefined;
  /** Fetches the secret anew (no caching here). Errors are AmbassadorErrors that name the source, never the secret. */
  fetch(login: LoginTarget): Promise<Secret>;
  /** The user name to log in as, given the configured one or the client's (GCP trims service account emails). */
  loginUser?(user: string): string;
  /** Starts watching the source; calls `onChange` when it may have changed. Returns the stop function. */
  watch?(onChange: () => void): () => void;
}

/** A password fixed in the config (possibly interpolated from the environment at load time). */
export class StaticPasswordProvider implements CredentialProvider {
  readonly kind = 'password';
  readonly rotates = false;
  readonly token = false;

  constructor(private readonly password: string) {}

  async fetch(): Promise<Secret> {
    return { password: this.password };
  }
}

/** Reads an environment variable at each fetch, so a reload (SIGHUP) sees a changed value. */
export class EnvPasswordProvider implements CredentialProvider {
  readonly kind = 'env';
  readonly rotates = true;
  readonly token = false;

  constructor(
    private readonly variable: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  async fetch(): Promise<Secret> {
    const value = this.env[this.variable];
    if (value === undefined || value === '') {
      throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `environment variable ${this.variable} holding the upstream password is not set`);
    }
    return { password: value };
  }
}

/** Reads a file (a mounted Kubernetes secret); one trailing newline is dropped. Watched for swaps. */
export class FilePasswordProvider implements CredentialProvider {
  readonly kind = 'file';
  readonly rotates = true;
  readonly token = false;

  constructor(
    private readonly path: string,
    private readonly pollMs?: number,
  ) {}

  async fetch(): Promise<Secret> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `could not read the upstream password file ${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    const password = text.replace(/\r?\n$/, '');
    // An empty file is most often a write caught half-way (truncate, then write): not a password.
    if (password === '') throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `the upstream password file ${this.path} is empty`);
    return { password };
  }

  watch(onChange: () => void): () => void {
    const watch = new FileWatch([this.path], onChange, this.pollMs === undefined ? {} : { pollMs: this.pollMs });
    return () => watch.close();
  }
}

export interface ExecOptions {
  /** A shell command line (run by /bin/sh -c) or an argument vector (run directly). */
  command: string | readonly string[];
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
}

/** Output larger than this is not a password; the command is stopped. */
const EXEC_MAX_OUTPUT = 64 * 1024;

/**
 * Runs a command that prints the password, or JSON `{ "password": ..., "expiresAt": ... }`
 * (expiresAt an ISO 8601 time or seconds since the epoch). The command learns which login it
 * serves from PG_AMBASSADOR_HOST, PG_AMBASSADOR_PORT and PG_AMBASSADOR_USER.
 */
export class ExecPasswordProvider implements CredentialProvider {
  readonly kind = 'exec';
  readonly rotates = true;
  readonly token = false;

  constructor(private readonly options: ExecOptions) {}

  async fetch(login: LoginTarget): Promise<Secret> {
    const output = await this.run(login);
    return parseExecOutput(output, this.describe());
  }

  private describe(): string {
    const { command } = this.options;
    const name = typeof command === 'string' ? command.trim().split(/\s+/)[0] : command[0];
    return `credentials command ${name ?? ''}`.trimEnd();
  }

  private run(login: LoginTarget): Promise<string> {
    const { command, timeoutMs } = this.options;
    const [file, args] = typeof command === 'string' ? ['/bin/sh', ['-c', command]] : [command[0]!, command.slice(1)];
    const env = {
      ...(this.options.env ?? process.env),
      PG_AMBASSADOR_HOST: login.host,
      PG_AMBASSADOR_PORT: String(login.port),
      PG_AMBASSADOR_USER: login.user,
    };
    return new Promise((resolve, reject) => {
      // Its own process group, so a timeout stops what the command started too (a shell's
      // children would otherwise hold the output pipe open until they finish).
      const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const stdout: Buffer[] = [];
      let stdoutBytes = 0;
      let stderr = '';
      let failure: AmbassadorError | null = null;
      const fail = (message: string): void => {
        failure ??= new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${this.describe()} ${message}`);
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL'); // the group is gone already
        }
      };
      const timer = setTimeout(() => fail(`did not finish within ${timeoutMs} ms`), timeoutMs);
      child.stdout.on('data', (chunk: Buffer) => {
        stdoutBytes += chunk.length;
        if (stdoutBytes > EXEC_MAX_OUTPUT) return fail(`printed more than ${EXEC_MAX_OUTPUT} bytes`);
        stdout.push(chunk);
      });
      // stderr is for diagnostics: its last line (bounded) goes into the error; stdout never does.
      child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-2048)));
      child.on('error', (err: NodeJS.ErrnoException) => fail(`could not be started: ${err.code ?? err.message}`));
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (failure) return reject(failure);
        if (code !== 0) {
          const last = stderr.trim().split('\n').pop()?.slice(0, 200);
          const how = code === null ? `was killed by ${signal}` : `exited with status ${code}`;
          return reject(new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${this.describe()} ${how}${last ? `: ${last}` : ''}`));
        }
        resolve(Buffer.concat(stdout).toString('utf8'));
      });
    });
  }
}

/** A password line, or a JSON object with `password` and an optional `expiresAt`. */
export function parseExecOutput(output: string, source: string): Secret {
  const text = output.replace(/\r?\n$/, '');
  if (text.trimStart().startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${source} printed something that starts like JSON but does not parse`);
    }
    const { password, expiresAt } = parsed as { password?: unknown; expiresAt?: unknown };
    if (typeof password !== 'string' || password === '') {
      throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${source} printed JSON without a non-empty "password" string`);
    }
    if (expiresAt === undefined || expiresAt === null) return { password };
    const when = expiryTime(expiresAt);
    if (when === null) {
      throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${source} printed an "expiresAt" that is neither an ISO 8601 time nor seconds since the epoch`);
    }
    return { password, expiresAt: when };
  }
  if (text === '') throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${source} printed nothing`);
  if (text.includes('\n')) throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${source} printed more than one line (expected a password or JSON)`);
  return { password: text };
}

function expiryTime(value: unknown): Date | null {
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return new Date(value * 1000);
  if (typeof value === 'string' && value.trim() !== '') {
    const ms = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) * 1000 : Date.parse(value);
    return Number.isFinite(ms) ? new Date(ms) : null;
  }
  return null;
}

/**
 * A cloud SDK's error message for our own errors: on one line and bounded (a failed Azure chain
 * lists every credential it tried). A JSON syntax error may quote the credentials file it failed
 * on (a private key), so it is replaced. The SDK error is never kept as a cause: loggers
 * serialize causes whole, request configs and bodies included.
 */
export function sdkMessage(err: unknown, maxLength = 300): string {
  if (err instanceof SyntaxError) return 'the credentials file is not valid JSON';
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s+/g, ' ').trim().slice(0, maxLength);
}
