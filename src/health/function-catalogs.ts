// One read/write classifier per database, each fed by that database's function catalog: which
// functions the primary's pg_proc marks VOLATILE (they may write, so a statement calling them goes
// to the primary). The catalog is read when a database is first used, again every
// `refreshIntervalMs`, and soon after a client ran DDL there (CREATE FUNCTION and friends).
//
// Until a database's catalog has loaded, its classifier knows only the built-in lists: a call to
// any other function counts as a write. A failed read keeps the catalog it had and is retried
// at the next refresh.

import type { Logger } from 'pino';
import { systemClock, type Clock, type Timer } from '../lib/clock.ts';
import { Classifier, EMPTY_FUNCTION_CATALOG, type ClassifierOptions } from '../router/classifier.ts';
import { catalogFromRows } from '../router/classifier-functions.ts';
import type { ServerRequest } from '../pool/server-pool.ts';

/** Every function of the database, with whether any of its overloads is VOLATILE. */
export const CATALOG_SQL = `SELECT n.nspname, p.proname, bool_or(p.provolatile = 'v')
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  GROUP BY 1, 2`;

/** Reads CATALOG_SQL on the primary for a request's database and user. */
export type CatalogReader = (request: ServerRequest) => Promise<Array<Array<string | null>>>;

export interface FunctionCatalogsOptions {
  classifier: Omit<ClassifierOptions, 'functions'>;
  refreshIntervalMs: number;
  read: CatalogReader;
  log: Logger;
  /** Time source (tests pass a FakeClock); the system clock by default. */
  clock?: Clock;
}

interface DatabaseCatalog {
  classifier: Classifier;
  request: ServerRequest;
  loaded: Promise<void>;
  loading: Promise<void> | null;
  /** A reload was asked for while one was running. */
  again: boolean;
  timer: Timer | null;
}

/** After DDL, wait this long before re-reading (a migration runs many statements in a row). */
const DDL_SETTLE_MS = 50;

export class FunctionCatalogs {
  private readonly databases = new Map<string, DatabaseCatalog>();
  private stopped = false;

  private readonly clock: Clock;

  constructor(private readonly options: FunctionCatalogsOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** The database's classifier (created on first use, its catalog read in the background). */
  classifierFor(request: ServerRequest): Classifier {
    return this.entry(request).classifier;
  }

  /** Resolves when the database's first catalog read has finished (loaded or failed). */
  ready(request: ServerRequest): Promise<void> {
    return this.entry(request).loaded;
  }

  /** A client changed the schema of `database`: re-read its catalog soon. */
  invalidate(database: string): void {
    const entry = this.databases.get(database);
    if (entry === undefined || this.stopped) return;
    this.schedule(entry, DDL_SETTLE_MS);
  }

  stop(): void {
    this.stopped = true;
    for (const entry of this.databases.values()) if (entry.timer) this.clock.clearTimeout(entry.timer);
  }

  private entry(request: ServerRequest): DatabaseCatalog {
    let entry = this.databases.get(request.database);
    if (entry === undefined) {
      const classifier = new Classifier({ ...this.options.classifier, functions: EMPTY_FUNCTION_CATALOG });
      entry = { classifier, request, loaded: Promise.resolve(), loading: null, again: false, timer: null };
      this.databases.set(request.database, entry);
      entry.loaded = this.load(entry);
    }
    return entry;
  }

  private load(entry: DatabaseCatalog): Promise<void> {
    if (entry.loading !== null) {
      entry.again = true;
      return entry.loading;
    }
    const started = this.clock.now();
    entry.loading = this.options.read(entry.request).then(
      (rows) => {
        const functions = catalogFromRows(
          rows.map(([schema, name, volatile]) => ({ schema: schema ?? '', name: name ?? '', volatile: volatile === 't' })),
        );
        entry.classifier.setCatalog(functions);
        this.options.log.debug({ database: entry.request.database, functions: rows.length, ms: this.clock.now() - started }, 'function catalog loaded');
      },
      (err: unknown) => {
        this.options.log.warn(
          { database: entry.request.database, err: err instanceof Error ? err.message : String(err) },
          'could not read the function catalog; calls to functions not on the built-in lists go to the primary',
        );
      },
    );
    void entry.loading.finally(() => {
      entry.loading = null;
      if (this.stopped) return;
      if (entry.again) {
        entry.again = false;
        void this.load(entry);
      } else {
        this.schedule(entry, this.options.refreshIntervalMs);
      }
    });
    return entry.loading;
  }

  private schedule(entry: DatabaseCatalog, delayMs: number): void {
    if (entry.loading !== null) {
      entry.again = true;
      return;
    }
    if (entry.timer) this.clock.clearTimeout(entry.timer);
    entry.timer = this.clock.setTimeout(() => {
      entry.timer = null;
      void this.load(entry);
    }, delayMs);
    entry.timer.unref();
  }
}
