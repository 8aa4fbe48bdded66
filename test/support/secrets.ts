// The secret scan: every secret the tests use, in one list, and the capture of what the
// ambassador shows the world, so that scripts/run-tests.ts can check, after all test files ran,
// that no secret reached any output of the run.
//
// How it fits together:
// - scripts/run-tests.ts creates a directory, names it in PG_AMBASSADOR_SECRET_SCAN_DIR for every
//   test process, and has node --test write a second copy of its report there (every test's
//   stdout/stderr and failure messages).
// - Test support appends what the ambassador wrote or served to `output-<pid>.txt` there:
//   in-process ambassadors' raw logs, /metrics and /config (test/support/ambassador.ts, at stop),
//   spawned CLIs' stdout/stderr, and whatever a test hands to captureOutput (client-visible
//   ErrorResponse texts, check-config output). Writes happen once per ambassador, at its stop (or
//   at process exit), never per log line.
// - Secrets made up while a test runs (rotated passwords, fake cloud tokens) are registered with
//   testSecret(); the fixed ones are TEST_SECRETS; the shared cluster's passwords come from its
//   description; SECRET_PATTERNS catch random secrets of test files that do not register theirs.
// - At the end the runner calls scanForSecrets and fails the run naming the file, the capture's
//   label and the secret's name and hash, never the secret.
// Without the environment variable (a test file run on its own) capturing does nothing.
//
// This module is imported by the runner too: no node:test, no test topology here.

import { createHash } from 'node:crypto';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ClusterDescription, Login } from '../../src/demo/cluster.ts';

export const SECRET_SCAN_DIR_ENV = 'PG_AMBASSADOR_SECRET_SCAN_DIR';

/**
 * The fixed secrets of the suite. Tests take them from here, never from a literal of their own,
 * so that the scan knows every one of them.
 */
export const TEST_SECRETS = {
  /** Clients' password to the ambassador (clientAuth.users), re-exported by ambassador.ts. */
  clientPassword: 'client-side-secret-8f3a',
  /** admin.token of the security tests and the admin HTTP unit tests. */
  adminToken: 'admin-token-secret-c41d',
  /** A second admin token (a reload changes it). */
  adminTokenRotated: 'admin-token-rotated-97e2',
  /** The password of the admin console user in the security tests. */
  consolePassword: 'console-user-secret-6d0b',
  /** An upstream role's password that Postgres considers expired (VALID UNTIL in the past). */
  expiredUpstreamPassword: 'expired-upstream-secret-2a9f',
  /** Passwords the security tests try and that must not work (they are secrets all the same). */
  wrongPassword: 'wrong-password-secret-e31c',
  // Literals of test files that predate this list; scanned here until those files import them.
  /** test/integration/admin-console.test.ts READER_PASSWORD. */
  adminConsoleReaderPassword: 'reader-console-secret-5b1c',
  /** test/integration/upstream.test.ts: the wrong upstream password. */
  upstreamWrongPassword: 'definitely-wrong-pw-31337',
} as const;

export interface NamedSecret {
  readonly name: string;
  readonly value: string;
}

/**
 * Random secrets of test files that do not register them with testSecret (yet): the shape they are
 * made in. Keep each specific enough that nothing else matches it.
 */
export const SECRET_PATTERNS: ReadonlyArray<{ name: string; prefix: string; pattern: RegExp }> = [
  // test/integration/cloud-credentials.test.ts newToken('ya29.') / newToken('eyJ0.'): 24 random bytes in hex
  { name: 'cloud-credentials GCP token', prefix: 'ya29.', pattern: /ya29\.[0-9a-f]{48}/ },
  { name: 'cloud-credentials Azure token', prefix: 'eyJ0.', pattern: /eyJ0\.[0-9a-f]{48}/ },
  // test/integration/credential-rotation.test.ts newPassword(): `pw-` and 12 random bytes in hex
  { name: 'credential-rotation password', prefix: 'pw-', pattern: /(?<![0-9A-Za-z_-])pw-[0-9a-f]{24}(?![0-9a-f])/ },
];

/** Secrets shorter than this are not scanned for: they would match ordinary text. */
export const MIN_SECRET_LENGTH = 8;

/** The fixed secrets as a list. */
export function fixedSecrets(): NamedSecret[] {
  return Object.entries(TEST_SECRETS).map(([name, value]) => ({ name: `TEST_SECRETS.${name}`, value }));
}

/** The passwords of a cluster description (shared or private): superuser, replication, users. */
export function clusterSecrets(cluster: Pick<ClusterDescription, 'superuser' | 'replication' | 'users'>): NamedSecret[] {
  const logins: Array<[string, Login]> = [['superuser', cluster.superuser], ['replication', cluster.replication], ...Object.entries(cluster.users)];
  return logins.map(([name, login]) => ({ name: `cluster ${name} password`, value: login.password }));
}

// ---- capture (test processes) -----------------------------------------------------------------

const scanDir = (): string | undefined => process.env[SECRET_SCAN_DIR_ENV] || undefined;
const testFile = path.basename(process.argv[1] ?? 'unknown');
const pending = new Map<number, { label: string; text: () => string }>();
let nextPending = 0;
let exitHooked = false;

function append(file: string, text: string): void {
  const dir = scanDir();
  if (dir === undefined) return;
  appendFileSync(path.join(dir, `${file}-${testFile}-${process.pid}.txt`), text);
}

/** True when a scan runs (captures are kept). */
export const secretScanEnabled = (): boolean => scanDir() !== undefined;

/** Adds `text` to this process's capture under `label`; nothing without a scan. */
export function captureOutput(label: string, text: string): void {
  if (text.length > 0) append('output', `\n=== ${label}\n${text}\n`);
}

/**
 * Captures `text()` once, either when the returned function is called (an ambassador's stop) or
 * at process exit if it never was, so output of something never stopped is still scanned.
 */
export function captureAtEnd(label: string, text: () => string): () => void {
  if (scanDir() === undefined) return () => {};
  const id = nextPending++;
  pending.set(id, { label, text });
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', () => {
      for (const entry of pending.values()) captureOutput(`${entry.label} (never stopped)`, entry.text());
      pending.clear();
    });
  }
  return () => {
    const entry = pending.get(id);
    if (entry === undefined) return;
    pending.delete(id);
    captureOutput(entry.label, entry.text());
  };
}

/** Registers a secret made up while a test runs (the scan looks for it); returns it. */
export function testSecret(name: string, value: string): string {
  append('secrets', `${JSON.stringify({ name: `${testFile}: ${name}`, value })}\n`);
  return value;
}

// ---- scan (the runner) ------------------------------------------------------------------------

export interface SecretFinding {
  /** The capture file, relative to the scan directory. */
  file: string;
  /** The `=== label` of the capture the secret was found in (or the file's own name). */
  label: string;
  /** The secret's name, never its value. */
  secret: string;
  /** First 12 hex digits of the secret's SHA-256, to tell secrets of one name apart. */
  hash: string;
  line: number;
}

export const secretHash = (value: string): string => createHash('sha256').update(value).digest('hex').slice(0, 12);

/** The secrets test processes registered with testSecret. */
export function registeredSecrets(dir: string): NamedSecret[] {
  const found: NamedSecret[] = [];
  for (const file of readdirSync(dir).filter((name) => name.startsWith('secrets-'))) {
    for (const line of readFileSync(path.join(dir, file), 'utf8').split('\n')) {
      if (line.trim() !== '') found.push(JSON.parse(line) as NamedSecret);
    }
  }
  return found;
}

/**
 * Looks for every secret (and SECRET_PATTERNS) in every file of `dir` except the registry of
 * secrets itself. Buffers are searched with indexOf (memchr-speed); a pattern's regex runs only on
 * files holding its prefix.
 */
export function scanForSecrets(dir: string, secrets: readonly NamedSecret[]): SecretFinding[] {
  const usable = dedupe(secrets.filter((s) => s.value.length >= MIN_SECRET_LENGTH));
  const findings: SecretFinding[] = [];
  for (const file of readdirSync(dir).filter((name) => !name.startsWith('secrets-')).sort()) {
    const bytes = readFileSync(path.join(dir, file));
    let text: string | undefined; // latin1: one character per byte, so byte offsets hold
    const at = (offset: number, secret: string, hash: string): void => {
      text ??= bytes.toString('latin1');
      findings.push({ file, secret, hash, ...where(text, offset, file) });
    };
    for (const secret of usable) {
      const offset = bytes.indexOf(secret.value);
      if (offset >= 0) at(offset, secret.name, secretHash(secret.value));
    }
    for (const { name, prefix, pattern } of SECRET_PATTERNS) {
      if (bytes.indexOf(prefix) < 0) continue;
      text ??= bytes.toString('latin1');
      const match = pattern.exec(text);
      if (match) at(match.index, name, secretHash(match[0]));
    }
  }
  return findings;
}

function dedupe(secrets: NamedSecret[]): NamedSecret[] {
  const byValue = new Map<string, NamedSecret>();
  for (const secret of secrets) if (!byValue.has(secret.value)) byValue.set(secret.value, secret);
  return [...byValue.values()];
}

/** The line number and the nearest `=== label` above an offset. */
function where(text: string, offset: number, file: string): { label: string; line: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const header = before.lastIndexOf('\n=== ');
  const label = header < 0 ? file : text.slice(header + 5, text.indexOf('\n', header + 1));
  return { label, line };
}

/** One line per finding, for the runner's report: never the secret itself. */
export function describeFinding(finding: SecretFinding): string {
  return `${finding.file}:${finding.line} [${finding.label}]: ${finding.secret} (sha256 ${finding.hash}…)`;
}
