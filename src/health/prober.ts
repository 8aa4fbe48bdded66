// What a health probe is and the one the health loop runs by default. The probe is one query
// (PROBE_SQL: role, WAL position and replay delay in one round trip) on a connection kept per
// host, opened with the same connector, TLS settings and credentials as pooled ones; a failed
// probe closes it so the next round reconnects (and so sees rotated credentials), and so do a
// change of the host's addresses and the host's removal from the configuration (forget), so the
// probe asks the server the name points at now and nothing is left open to a host no longer used.

import type { BackendConnection } from '../backend/connection.ts';
import { parseLsn } from '../pool/host-choice.ts';
import type { HostEntry } from '../pool/server-pool.ts';

export interface ProbeResult {
  inRecovery: boolean;
  /** The primary's current WAL position, or a replica's last replayed one. */
  lsn: bigint | null;
  /** A replica's replay delay (0 when it has replayed all it received); null when unknown. */
  lagMs: number | null;
}

/** Runs one probe against a host; rejects when the host cannot be reached or answer in time. */
export interface Prober {
  probe(host: HostEntry, timeoutMs: number): Promise<ProbeResult>;
  /** Drops what is kept for `host` (its address changed, or it was removed): the next probe connects afresh. */
  forget?(host: HostEntry): void;
  close(): void;
}

/** The query every probe runs: role, WAL position and replay delay in one round trip. */
export const PROBE_SQL = `SELECT pg_catalog.pg_is_in_recovery(),
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END,
  CASE WHEN NOT pg_catalog.pg_is_in_recovery() THEN 0
       WHEN pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn() THEN 0
       ELSE round(1000 * extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.pg_last_xact_replay_timestamp())) END`;

/** Reads a probe's single row. */
export function probeResultFromRow(row: ReadonlyArray<string | null> | undefined): ProbeResult {
  if (row === undefined || row.length < 3) throw new Error('probe returned no row');
  const lag = row[2] === null || row[2] === undefined ? null : Number(row[2]);
  return {
    inRecovery: row[0] === 't',
    lsn: row[1] === null || row[1] === undefined ? null : parseLsn(row[1]),
    lagMs: lag === null || !Number.isFinite(lag) ? null : Math.max(0, lag),
  };
}

export type ProbeConnect = (host: HostEntry, timeoutMs: number) => Promise<BackendConnection>;

export class BackendProber implements Prober {
  private readonly connections = new Map<string, BackendConnection>();
  /** Per host id: how many times it was forgotten, so a connect that lands afterwards is not kept. */
  private readonly forgets = new Map<string, number>();
  private closed = false;

  constructor(private readonly connect: ProbeConnect) {}

  async probe(host: HostEntry, timeoutMs: number): Promise<ProbeResult> {
    const id = `${host.host}:${host.port}`;
    let connection = this.connections.get(id);
    if (connection?.isClosed) connection = undefined;
    const forgets = this.forgets.get(id) ?? 0;
    try {
      if (connection === undefined) {
        connection = await this.connect(host, timeoutMs);
        if (this.closed) throw new Error('prober closed');
        if ((this.forgets.get(id) ?? 0) !== forgets) throw new Error(`the probe of ${id} was dropped while it connected`);
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
    this.forgets.set(id, (this.forgets.get(id) ?? 0) + 1);
    this.connections.get(id)?.close();
    this.connections.delete(id);
  }

  close(): void {
    this.closed = true;
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
  }
}
