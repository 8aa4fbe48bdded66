// Shared checks for hostile-client tests: after each piece of bad input, a normal `pg` client
// must still be served; and a refused client must get the expected SQLSTATE (or a bare close)
// followed by the end of its connection, without ever having been told AuthenticationOk. Also:
// openAndDrop (one socket of a connection churn), and GrowthLog / cpuSeconds, which read what the
// abuse cost an ambassador child process from /proc (open files, RSS, CPU time).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import pg from 'pg';
import { encodeSslRequest, encodeStartupMessage } from '../../src/protocol/startup.ts';
import { CLIENT_PASSWORD, viaAmbassador } from './ambassador.ts';
import { RawClient, type ErrorOrClose } from './raw-client.ts';
import { eventually } from './topology.ts';

/** A normal pg client logs in through the ambassador and runs `select 1`. */
export async function assertStillServes(port: number, login: { user?: string; password?: string } = {}): Promise<void> {
  const client = new pg.Client({
    ...viaAmbassador(port, { user: login.user ?? 'app', password: login.password ?? CLIENT_PASSWORD }),
    connectionTimeoutMillis: 10_000,
    query_timeout: 10_000,
  });
  client.on('error', () => {}); // a late socket error must not crash the test process
  try {
    await client.connect();
    const result = await client.query('select 1 as one');
    assert.deepEqual(result.rows, [{ one: 1 }], 'the ambassador no longer serves a normal client');
  } finally {
    await client.end().catch(() => {});
  }
}

export interface RefusalOptions {
  /** Whether a close without an ErrorResponse is acceptable (default false). */
  allowBareClose?: boolean;
  /** Deadline for the ErrorResponse or close (default 5 s). */
  timeoutMs?: number;
  /** A pattern the error message must match. */
  message?: RegExp;
  /** The client had logged in before misbehaving (skips the no-AuthenticationOk check). */
  afterLogin?: boolean;
}

/**
 * Asserts the client is refused: an ErrorResponse with one of `codes` (or, when allowed, a close
 * without one), then the connection ends. Unless `afterLogin`, fails if AuthenticationOk was
 * ever received.
 */
export async function expectRefused(client: RawClient, codes: readonly string[], options: RefusalOptions = {}): Promise<ErrorOrClose> {
  try {
    const reply = await client.expectErrorOrClose(options.timeoutMs ?? 5_000);
    if (reply.kind === 'error') {
      assert.ok(codes.includes(reply.code), `expected SQLSTATE ${codes.join(' or ')}, got ${reply.code}: ${reply.message}`);
      if (options.message) assert.match(reply.message, options.message);
    } else {
      assert.ok(options.allowBareClose, `expected an ErrorResponse (${codes.join(' or ')}), the connection was closed without one`);
    }
    await client.waitForClose(5_000);
    if (!options.afterLogin) {
      const authOk = client.history.some((m) => m.type === 'R' && m.payload.length >= 4 && m.payload.readInt32BE(0) === 0);
      assert.ok(!authOk, 'a refused client was sent AuthenticationOk');
    }
    return reply;
  } finally {
    client.destroy();
  }
}

/**
 * One socket of a connection churn: opened, abused in one of five ways chosen by `variant`
 * (nothing, half a startup packet, a whole one, an SSLRequest, garbage), then dropped, by a
 * reset (even variants) or a FIN (odd ones). Resolves once the drop is under way.
 */
export async function openAndDrop(port: number, variant: number): Promise<void> {
  const client = await RawClient.connect(port);
  const startup = encodeStartupMessage([
    ['user', 'app'],
    ['database', 'app'],
  ]);
  switch (variant % 5) {
    case 1:
      client.write(startup.subarray(0, 7));
      break;
    case 2:
      client.write(startup);
      break;
    case 3:
      client.write(encodeSslRequest());
      break;
    case 4:
      client.write(randomBytes(64));
      break;
  }
  if (variant % 2 === 0) client.socket.resetAndDestroy();
  else client.socket.end();
}

/** What a process has open (/proc/<pid>/fd), each as its link target ('socket:', 'pipe:', a path). */
export function openFiles(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  return readdirSync(dir).map((fd) => {
    try {
      return readlinkSync(`${dir}/${fd}`).replace(/\[\d+\]$/, '');
    } catch {
      return 'closed'; // went away between the listing and the look
    }
  });
}

/** Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ). */
const CLOCK_TICKS_PER_SECOND = 100;

/** User plus system CPU time a process has spent so far, in seconds (/proc/<pid>/stat). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** A child process whose growth is logged; collectGarbage when it can run a full collection on demand. */
export interface GrowthSubject {
  pid: number;
  rss(): number;
  collectGarbage?(): Promise<void>;
}

/**
 * A process's open files and RSS after each hostile case, against a baseline taken when the log
 * begins (after a warm-up, with no client connected). settle() waits for the open files to
 * come back within `fdSlack` of the baseline (closes take a moment), failing with what is open.
 * RSS is read after a full collection when the child offers one, so that what it shows is what
 * the process keeps, not what V8 has yet to collect.
 */

export class GrowthLog {
  private readonly samples: Array<{ name: string; fds: number; rss: number }> = [];

  private constructor(
    private readonly child: GrowthSubject,
    private readonly fdSlack: number,
    readonly baseline: { fds: number; rss: number },
  ) {}

  /** Takes the baseline: open files now, and RSS after a full collection when the child can be asked for one. */
  static async begin(child: GrowthSubject, fdSlack: number): Promise<GrowthLog> {
    await child.collectGarbage?.();
    return new GrowthLog(child, fdSlack, { fds: openFiles(child.pid).length, rss: child.rss() });
  }

  /** Waits for the open files to come back to the baseline (+ slack), then samples (RSS after a collection, as the baseline). */
  async settle(name: string): Promise<{ fds: number; rss: number }> {
    const limit = this.baseline.fds + this.fdSlack;
    let files: string[] = [];
    await eventually(async () => ((files = openFiles(this.child.pid)).length <= limit ? true : undefined), {
      what: `open files back to ${this.baseline.fds} (+${this.fdSlack})`,
      timeoutMs: 15_000,
    }).catch((err: Error) => {
      throw new Error(`after "${name}": ${err.message}; ${files.length} open: ${describeFiles(files)}`);
    });
    await this.child.collectGarbage?.();
    const sample = { name, fds: files.length, rss: this.child.rss() };
    this.samples.push(sample);
    return sample;
  }

  /** Prints the baseline and every sample (for the figures a change's notes quote). */
  report(label: string): void {
    const mib = (bytes: number): string => (bytes / (1024 * 1024)).toFixed(1);
    const lines = this.samples.map((s) => `  ${mib(s.rss).padStart(6)} MiB ${String(s.fds).padStart(4)} fds  ${s.name}`);
    console.log(`[${label}] baseline: RSS ${mib(this.baseline.rss)} MiB, ${this.baseline.fds} open files\n${lines.join('\n')}`);
  }
}

/** "socket:×12 pipe:×3 ..." for failure messages. */
function describeFiles(files: string[]): string {
  const counts = new Map<string, number>();
  for (const file of files) counts.set(file, (counts.get(file) ?? 0) + 1);
  return [...counts].map(([file, n]) => `${file}×${n}`).join(' ');
}
