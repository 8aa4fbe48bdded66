// One resource sample of the ambassador process: RSS and CPU (bench/proc.ts), descriptors and TCP
// sockets (proc-sockets.ts), and from its own /metrics (prom-client's default metrics plus the
// ambassador's gauges) Node's active handles, heap, and the client and server connections it
// believes it has. /metrics is optional: a failed scrape leaves `gauges` null and is not an error
// of the soak (the process readings are what the verdict needs).

import { readCpuSeconds, readRssBytes } from '../bench/proc.ts';
import { parseExposition, sample, total } from '../test/support/metrics.ts';
import { readSocketCounts, type SocketCounts } from './proc-sockets.ts';
import type { ResourcePoint } from './verdict.ts';

export interface AmbassadorGauges {
  activeHandles: number | null;
  heapUsedBytes: number | null;
  externalBytes: number | null;
  /** pg_ambassador_client_connections, every state. */
  clientConnections: number;
  /** pg_ambassador_server_connections, every host and state. */
  serverConnections: number;
}

export interface ResourceSample extends ResourcePoint {
  /** CPU of the process since the previous sample, in % of one core; null for the first. */
  cpuPercent: number | null;
  cpuSeconds: number;
  sockets: SocketCounts;
  gauges: AmbassadorGauges | null;
}

/** The gauges from a /metrics body. */
export function gaugesFromExposition(text: string): AmbassadorGauges {
  const samples = parseExposition(text);
  return {
    activeHandles: sample(samples, 'nodejs_active_handles_total') ?? null,
    heapUsedBytes: sample(samples, 'nodejs_heap_size_used_bytes') ?? null,
    externalBytes: sample(samples, 'nodejs_external_memory_bytes') ?? null,
    clientConnections: total(samples, 'pg_ambassador_client_connections'),
    serverConnections: total(samples, 'pg_ambassador_server_connections'),
  };
}

async function scrapeGauges(adminPort: number): Promise<AmbassadorGauges | null> {
  try {
    const response = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(4000) });
    if (response.status !== 200) return null;
    return gaugesFromExposition(await response.text());
  } catch {
    return null;
  }
}

export interface SampledProcess {
  pid: number;
  listenPort: number;
  adminPort: number;
}

export class ResourceSampler {
  readonly #target: SampledProcess;
  #last: { atMs: number; cpuSeconds: number } | null = null;

  constructor(target: SampledProcess) {
    this.#target = target;
  }

  /** Reads the process now; `tS` is the time into the run it is filed under. Throws when the process is gone. */
  async take(tS: number): Promise<ResourceSample> {
    const { pid, listenPort, adminPort } = this.#target;
    // The /proc readings first: the scrape itself makes the process allocate and open a socket.
    const atMs = performance.now();
    const cpuSeconds = readCpuSeconds(pid);
    const rssBytes = readRssBytes(pid);
    const sockets = readSocketCounts(pid, listenPort);
    const last = this.#last;
    this.#last = { atMs, cpuSeconds };
    const cpuPercent = last === null ? null : (100 * (cpuSeconds - last.cpuSeconds)) / ((atMs - last.atMs) / 1000);
    const gauges = await scrapeGauges(adminPort);
    return { tS, rssBytes, fds: sockets.fds, activeHandles: gauges?.activeHandles ?? null, cpuPercent, cpuSeconds, sockets, gauges };
  }
}
