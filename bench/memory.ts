// The memory bench: how much resident memory a proxy spends per idle, authenticated client. For
// each target (ambassador-txn and pgbouncer, both transaction pooling, scram-sha-256 clients) a
// fresh instance admitting clients + 100 connections is started, then:
//
//   1. one warm-up login (pools and parameter caches are set up once), closed; settle 1 s;
//      RSS before = VmRSS of the proxy process;
//   2. idle-clients.ts processes (2 by default, each holding its share; the fd limit is per
//      process) log the clients in, `concurrency` at a time each; time to connect = from "go" to
//      the last login;
//   3. settle 2 s (nothing forced: no GC, no request), RSS after = VmRSS, and the clients still open;
//   4. per idle client = (RSS after - RSS before) / clients still open.
//
// Then the clients close and the instance stops. Nothing about one target stops the other: a
// target that cannot start, or clients that fail, are reported in the result's `problem`.

import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { connectIdle, IDLE_CLIENTS_ENV, type ChildMessage, type IdleClientsSettings, type ParentMessage } from './idle-connection.ts';
import { readRssBytes } from './proc.ts';
import type { MemoryResult } from './report.ts';
import { ROOT, type RunningTarget, type TargetContext, type TargetSpec } from './targets.ts';

export interface MemoryBenchOptions {
  clients: number;
  /** Client processes the clients are spread over. */
  processes: number;
  /** Logins in flight per client process. */
  concurrency: number;
  settleMs: number;
  log: (line: string) => void;
}

export const MEMORY_DEFAULTS = { processes: 2, concurrency: 32, settleMs: 2000, loginTimeoutMs: 60_000 };

/** RSS growth per connected client, bytes; null without a before/after reading or without clients. */
export function bytesPerIdleClient(rssBeforeBytes: number | null, rssAfterBytes: number | null, connected: number): number | null {
  if (rssBeforeBytes === null || rssAfterBytes === null || connected <= 0) return null;
  return (rssAfterBytes - rssBeforeBytes) / connected;
}

/** `total` split over `parts` as evenly as possible (the first ones get the remainder). */
export function shares(total: number, parts: number): number[] {
  const count = Math.max(1, Math.min(parts, total));
  return Array.from({ length: count }, (_, index) => Math.floor(total / count) + (index < total % count ? 1 : 0));
}

/** An idle-clients.ts process and its next messages. */
class ClientProcess {
  readonly child: ChildProcess;
  readonly #queue: ChildMessage[] = [];
  #waiter: (() => void) | null = null;
  #exited = false;

  constructor(settings: IdleClientsSettings) {
    this.child = fork(path.join(import.meta.dirname, 'idle-clients.ts'), [], {
      execArgv: ['--import', 'tsx'],
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', [IDLE_CLIENTS_ENV]: JSON.stringify(settings) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (message: ChildMessage) => {
      this.#queue.push(message);
      this.#waiter?.();
    });
    this.child.once('exit', () => {
      this.#exited = true;
      this.#waiter?.();
    });
  }

  send(message: ParentMessage): void {
    if (!this.#exited) this.child.send(message);
  }

  /** The next message of `type`; throws when the process exits first or after `timeoutMs`. */
  async next<T extends ChildMessage['type']>(type: T, timeoutMs: number): Promise<Extract<ChildMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.#queue.findIndex((message) => message.type === type);
      if (index >= 0) return this.#queue.splice(index, 1)[0] as Extract<ChildMessage, { type: T }>;
      if (this.#exited) throw new Error(`idle-clients process ${this.child.pid} exited before "${type}"`);
      if (Date.now() > deadline) throw new Error(`idle-clients process ${this.child.pid}: no "${type}" within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        setTimeout(resolve, 500);
      });
      this.#waiter = null;
    }
  }

  async stop(): Promise<void> {
    if (this.#exited) return;
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await new Promise<void>((resolve) => {
      if (this.#exited) resolve();
      else this.child.once('exit', () => resolve());
    });
    clearTimeout(timer);
  }
}

function emptyResult(target: string, clients: number, problem: string): MemoryResult {
  return {
    target, clients, connected: 0, failedLogins: 0, errors: [], rssBeforeBytes: null, rssAfterBytes: null, bytesPerClient: null,
    connectSeconds: null, problem, details: null,
  };
}

async function holdClients(target: RunningTarget, options: MemoryBenchOptions, result: MemoryResult): Promise<void> {
  const { log, clients } = options;
  const settings = (count: number): IdleClientsSettings => ({
    endpoint: { ...target.endpoint }, count, concurrency: options.concurrency, loginTimeoutMs: MEMORY_DEFAULTS.loginTimeoutMs,
  });
  const processes = shares(clients, options.processes).map((count) => new ClientProcess(settings(count)));
  try {
    await Promise.all(processes.map((child) => child.next('loaded', 30_000)));
    const started = performance.now();
    for (const child of processes) child.send({ type: 'go' });
    const reports = await Promise.all(processes.map((child) => child.next('connected', clients * 100 + 60_000)));
    result.connectSeconds = (performance.now() - started) / 1000;
    result.failedLogins = reports.reduce((sum, report) => sum + report.failed, 0);
    result.errors = reports.flatMap((report) => report.errors).slice(0, 5);
    log(`memory ${target.name}: ${clients - result.failedLogins} of ${clients} clients logged in in ${result.connectSeconds.toFixed(1)} s; settling`);
    await sleep(options.settleMs);
    result.rssAfterBytes = readRssBytes(target.pid!);
    for (const child of processes) child.send({ type: 'status' });
    const statuses = await Promise.all(processes.map((child) => child.next('status', 30_000)));
    result.connected = statuses.reduce((sum, status) => sum + status.open, 0);
    for (const child of processes) child.send({ type: 'close' });
    await Promise.all(processes.map((child) => child.next('closed', 30_000)));
  } finally {
    await Promise.all(processes.map((child) => child.stop()));
  }
}

/** The memory bench for one target; never throws for a target that misbehaves (see `problem`). */
export async function measureIdleMemory(
  spec: TargetSpec,
  context: Omit<TargetContext, 'clients'> & { onStart?: (target: RunningTarget) => void },
  options: MemoryBenchOptions,
): Promise<MemoryResult> {
  const { clients, log } = options;
  const { onStart, ...targetContext } = context;
  let target: RunningTarget;
  try {
    target = await spec.start({ ...targetContext, clients, maxClientConnections: clients + 100 });
    onStart?.(target);
  } catch (error) {
    return emptyResult(spec.name, clients, `start failed: ${(error as Error).message.split('\n')[0]}`);
  }
  const result = emptyResult(spec.name, clients, '');
  result.details = target.details ?? null;
  try {
    (await connectIdle({ ...target.endpoint }, 10_000)).close();
    await sleep(1000);
    result.rssBeforeBytes = readRssBytes(target.pid!);
    await holdClients(target, options, result);
  } catch (error) {
    result.problem = (error as Error).message;
  } finally {
    const death = target.deathReason();
    if (death !== null) result.problem = `target process died: ${death.split('\n')[0]}`;
    await target.stop();
  }
  result.bytesPerClient = bytesPerIdleClient(result.rssBeforeBytes, result.rssAfterBytes, result.connected);
  if (result.problem === '') {
    result.problem = result.connected < clients ? `${clients - result.connected} of ${clients} clients not connected: ${result.errors[0] ?? 'closed while idle'}` : null;
  }
  log(
    `memory ${spec.name}: ${result.connected} idle clients, ` +
      `${result.bytesPerClient === null ? '–' : (result.bytesPerClient / 1024).toFixed(2)} KiB each${result.problem ? `; ${result.problem}` : ''}`,
  );
  return result;
}
