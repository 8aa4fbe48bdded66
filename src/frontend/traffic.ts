// What the client sessions measure as they forward: requests and where they went, queries and
// transactions with their durations, time spent waiting for a server, errors sent to clients,
// and bytes both ways. Totals are kept per database (SHOW STATS reads them, PgBouncer's
// columns); each event is also passed to a TrafficObserver (the metrics module), so the core
// never imports a metrics library.
//
// Hot path: a session looks its DatabaseTraffic up once and then only bumps numbers on it; the
// observer gets primitives (no objects are made per event).

export type TrafficRoute = 'primary' | 'replica';

/** Receives each event as it happens. Synchronous; it must not throw (the metrics module). */
export interface TrafficObserver {
  /** A request (a Query, or Parse..Sync) was sent to a server; `reason` is the routing decision's. */
  request(route: TrafficRoute, reason: string): void;
  /** A query completed (its ReadyForQuery arrived), `seconds` after it was sent. */
  query(route: TrafficRoute, seconds: number): void;
  /** A transaction ended (ReadyForQuery 'I'), `seconds` after its first request was sent. */
  transaction(route: TrafficRoute, seconds: number): void;
  /** A client waited `seconds` for a server connection. */
  poolWait(seconds: number): void;
  /** An ErrorResponse reached a client (the server's own, or one the ambassador made). */
  error(sqlstate: string): void;
}

/** Running totals of one database since start; times in microseconds (as PgBouncer's SHOW STATS). */
export class DatabaseTraffic {
  xacts = 0;
  queries = 0;
  /** Bytes from clients, and to clients. */
  received = 0;
  sent = 0;
  xactTimeUs = 0;
  queryTimeUs = 0;
  waitTimeUs = 0;

  constructor(
    readonly database: string,
    private readonly observer: TrafficObserver | null,
  ) {}

  request(route: TrafficRoute, reason: string): void {
    this.observer?.request(route, reason);
  }

  query(route: TrafficRoute, seconds: number): void {
    this.queries++;
    this.queryTimeUs += Math.round(seconds * 1e6);
    this.observer?.query(route, seconds);
  }

  transaction(route: TrafficRoute, seconds: number): void {
    this.xacts++;
    this.xactTimeUs += Math.round(seconds * 1e6);
    this.observer?.transaction(route, seconds);
  }

  wait(seconds: number): void {
    this.waitTimeUs += Math.round(seconds * 1e6);
    this.observer?.poolWait(seconds);
  }

  error(sqlstate: string): void {
    this.observer?.error(sqlstate);
  }
}

/** The totals SHOW STATS shows for a database, and their per-second averages over the last period. */
export interface DatabaseTotals {
  database: string;
  xacts: number;
  queries: number;
  received: number;
  sent: number;
  xactTimeUs: number;
  queryTimeUs: number;
  waitTimeUs: number;
}

type Sample = { at: number; totals: Map<string, DatabaseTotals> };

export class TrafficStats {
  private readonly byDatabase = new Map<string, DatabaseTraffic>();
  /** Errors made before a session knew its database (login failures). */
  private readonly loose: DatabaseTraffic;
  private previous: Sample;
  private latest: Sample;

  constructor(
    private readonly observer: TrafficObserver | null = null,
    private readonly now: () => number = Date.now,
  ) {
    this.loose = new DatabaseTraffic('', observer);
    this.previous = this.latest = { at: now(), totals: new Map() };
  }

  /** The totals of `database`, created on first use (a session keeps the reference). */
  forDatabase(database: string): DatabaseTraffic {
    let traffic = this.byDatabase.get(database);
    if (traffic === undefined) this.byDatabase.set(database, (traffic = new DatabaseTraffic(database, this.observer)));
    return traffic;
  }

  /** For events that belong to no database yet (an error during login). */
  get unattributed(): DatabaseTraffic {
    return this.loose;
  }

  /** Every database's totals, in name order. */
  totals(): DatabaseTotals[] {
    return [...this.byDatabase.values()]
      .map((t) => ({
        database: t.database,
        xacts: t.xacts,
        queries: t.queries,
        received: t.received,
        sent: t.sent,
        xactTimeUs: t.xactTimeUs,
        queryTimeUs: t.queryTimeUs,
        waitTimeUs: t.waitTimeUs,
      }))
      .sort((a, b) => a.database.localeCompare(b.database));
  }

  /** Bytes from and to clients, over every database. */
  bytes(): { received: number; sent: number } {
    let received = 0;
    let sent = 0;
    for (const t of this.byDatabase.values()) {
      received += t.received;
      sent += t.sent;
    }
    return { received, sent };
  }

  /**
   * Takes a sample of the totals (called every stats period); averages compare the last two
   * samples, as PgBouncer's avg_* columns do.
   */
  sample(): void {
    this.previous = this.latest;
    this.latest = { at: this.now(), totals: new Map(this.totals().map((t) => [t.database, t])) };
  }

  /**
   * Per-second rates of the last stats period per database (xacts, queries, bytes), and average
   * times per transaction, per query and wait per query, in µs. Zeros before two samples exist.
   */
  averages(database: string): { xacts: number; queries: number; received: number; sent: number; xactTimeUs: number; queryTimeUs: number; waitTimeUs: number } {
    const seconds = (this.latest.at - this.previous.at) / 1000;
    const now = this.latest.totals.get(database);
    const before = this.previous.totals.get(database);
    const delta = (key: keyof Omit<DatabaseTotals, 'database'>): number => (now?.[key] ?? 0) - (before?.[key] ?? 0);
    const rate = (value: number): number => (seconds > 0 ? Math.round(value / seconds) : 0);
    const per = (value: number, count: number): number => (count > 0 ? Math.round(value / count) : 0);
    return {
      xacts: rate(delta('xacts')),
      queries: rate(delta('queries')),
      received: rate(delta('received')),
      sent: rate(delta('sent')),
      xactTimeUs: per(delta('xactTimeUs'), delta('xacts')),
      queryTimeUs: per(delta('queryTimeUs'), delta('queries')),
      waitTimeUs: per(delta('waitTimeUs'), delta('queries')),
    };
  }
}
