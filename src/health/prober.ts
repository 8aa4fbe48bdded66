// The probe the health loop runs: one connection per host, opened with the same connector, TLS
// settings and credentials as pooled ones and kept between rounds; a failed probe closes it so
// the next round reconnects (and so sees rotated credentials), and so does a change of the host's
// addresses (forget), so the probe asks the server the name points at now.

import type { BackendConnection } from '../backend/connection.ts';
import type { HostEntry } from '../pool/server-pool.ts';
import { PROBE_SQL, probeResultFromRow, type Prober, type ProbeResult } from './monitor.ts';

export type ProbeConnect = (host: HostEntry, timeoutMs: number) => Promise<BackendConnection>;

export class BackendProber implements Prober {
  private readonly connections = new Map<string, BackendConnection>();
  private closed = false;

  constructor(private readonly connect: ProbeConnect) {}

  async probe(host: HostEntry, timeoutMs: number): Promise<ProbeResult> {
    const id = `${host.host}:${host.port}`;
    let connection = this.connections.get(id);
    if (connection?.isClosed) connection = undefined;
    try {
      if (connection === undefined) {
        connection = await this.connect(host, timeoutMs);
        if (this.closed) throw new Error('prober closed');
        this.connections.set(id, connection);
      }
      const rows = await connection.query(PROBE_SQL, timeoutMs);
      return probeResultFromRow(rows[0]);
    } catch (err) {
      connection?.close(true);
      this.connections.delete(id);
      throw err;
    }
  }

  forget(host: HostEntry): void {
    const id = `${host.host}:${host.port}`;
    this.connections.get(id)?.close();
    this.connections.delete(id);
  }

  close(): void {
    this.closed = true;
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
  }
}
