// What a client's session looks like to the server it happens to be on, in transaction mode:
// the settings to make true on each leased server (startup parameters, SET), and the state that
// cannot be carried from server to server and so pins the client to its server (advisory locks,
// LISTEN, temp tables, WITH HOLD cursors, SQL PREPARE, PREPARE TRANSACTION), each with a named
// reason.
//
// Effects of a request are staged, then committed when its transaction commits or discarded
// when it rolls back (a SET inside a rolled-back transaction is undone by Postgres too). Pins
// take effect at once: holding a server a little longer than needed is safe; releasing it
// while a lock or LISTEN lives on it is not.

import type { PinReason, SessionEffect } from '../router/session-effects.ts';

/** Startup parameters that are not session settings. */
const NOT_SETTINGS = new Set(['user', 'database', 'options', 'replication']);

export class ClientSessionState {
  /** name -> replayable statement; startup parameters first, then SETs. */
  private readonly settings = new Map<string, string>();
  private readonly startup = new Map<string, string>();
  private staged: SessionEffect[] = [];
  private key: string | null = null;
  private readonly pins = new Map<PinReason, number>();
  private readonly listening = new Set<string>();
  private readonly holdCursors = new Set<string>();
  private readonly sqlPrepared = new Set<string>();
  private advisoryLocks = 0;
  /** The lock count reached zero: the server must confirm before the advisory pin goes. */
  advisoryRecheck = false;

  /**
   * @param onPin called each time the session becomes pinned for a reason it was not pinned for
   *   (counted per reason by the listener; the metrics work exports them).
   */
  constructor(
    startupParams: ReadonlyMap<string, string>,
    private readonly onPin: (reason: PinReason) => void = () => {},
  ) {
    // A startup value is a configuration string, parsed as Postgres parses startup options:
    // set_config() does the same (SET ... TO 'a,b' would make one search_path entry "a,b").
    for (const [name, value] of startupParams) {
      if (NOT_SETTINGS.has(name)) continue;
      this.startup.set(name.toLowerCase(), setConfig(name, value));
    }
    for (const [name, value] of parseOptions(startupParams.get('options') ?? '')) {
      this.startup.set(name.toLowerCase(), setConfig(name, value));
    }
    this.resetSettings();
  }

  /** A string that is equal for two clients exactly when their settings are. */
  get stateKey(): string {
    this.key ??= [...this.settings.values()].join(';\n');
    return this.key;
  }

  /** The statements that make a freshly reset server look like this client's session. */
  get syncStatements(): string[] {
    return [...this.settings.values()];
  }

  get pinned(): boolean {
    return this.pins.size > 0;
  }

  get pinReasons(): PinReason[] {
    return [...this.pins.keys()];
  }

  /** Records a request's effects; pins apply now, the rest when its transaction commits. */
  stage(effects: readonly SessionEffect[]): void {
    for (const effect of effects) {
      if (effect.kind === 'pin') this.pin(effect.reason);
      else if (effect.kind === 'listen') this.listen(effect.channel);
      else if (effect.kind === 'advisory-lock') this.lockAdvisory();
      else if (effect.kind === 'cursor-with-hold') this.holdCursor(effect.name);
      else if (effect.kind === 'sql-prepare') this.prepareSql(effect.name);
      else if (effect.kind !== 'transaction' || this.staged.length > 0 || effect.action === 'savepoint') this.staged.push(effect);
    }
  }

  /** Whether anything staged would change the session's settings when committed. */
  get hasStaged(): boolean {
    return this.staged.length > 0 && this.staged.some((e) => e.kind !== 'transaction');
  }

  /**
   * The transaction that staged effects committed. Savepoints are honoured: what was staged
   * after a savepoint and undone by ROLLBACK TO is not applied.
   */
  commit(): void {
    if (this.staged.length === 0) return; // nearly every transaction: it changed no setting
    const applied: SessionEffect[] = [];
    const savepoints: number[] = [];
    for (const effect of this.staged) {
      if (effect.kind !== 'transaction') applied.push(effect);
      else if (effect.action === 'savepoint') savepoints.push(applied.length);
      else if (effect.action === 'rollback-to') applied.length = savepoints.at(-1) ?? 0;
      else if (effect.action === 'release') savepoints.pop();
      else if (effect.action === 'rollback') applied.length = 0;
    }
    this.staged = [];
    for (const effect of applied) this.applyCommitted(effect);
  }

  /** The transaction rolled back: what it staged never happened. */
  discard(): void {
    if (this.staged.length > 0) this.staged = [];
  }

  private applyCommitted(effect: SessionEffect): void {
    switch (effect.kind) {
      case 'set':
      case 'set-config':
        this.settings.delete(effect.name);
        this.settings.set(effect.name, effect.statement);
        this.key = null;
        return;
      case 'reset': {
        this.settings.delete(effect.name);
        const original = this.startup.get(effect.name);
        if (original) this.settings.set(effect.name, original);
        this.key = null;
        return;
      }
      case 'reset-all':
        return this.resetSettings();
      case 'discard':
        if (effect.what === 'all') return this.discardAll();
        if (effect.what === 'temp') this.unpin('temp-table');
        return;
      case 'unlisten':
        if (effect.channel === '*') this.listening.clear();
        else this.listening.delete(effect.channel);
        if (this.listening.size === 0) this.unpin('listen');
        return;
      case 'advisory-unlock':
        // One call in the text may have taken many locks (select pg_advisory_lock(id) from t):
        // when the count says none are left, the server is asked before the pin goes.
        this.advisoryLocks = Math.max(0, this.advisoryLocks - 1);
        if (this.advisoryLocks === 0 && this.pins.has('advisory-lock')) this.advisoryRecheck = true;
        return;
      case 'advisory-unlock-all':
        this.advisoryLocks = 0;
        this.advisoryRecheck = false;
        return this.unpin('advisory-lock');
      case 'close-cursor':
        if (effect.name === 'ALL') this.holdCursors.clear();
        else this.holdCursors.delete(effect.name);
        if (this.holdCursors.size === 0) this.unpin('with-hold-cursor');
        return;
      case 'sql-deallocate':
        if (effect.name === 'ALL') this.sqlPrepared.clear();
        else this.sqlPrepared.delete(effect.name);
        if (this.sqlPrepared.size === 0) this.unpin('sql-prepare');
        return;
      case 'unpin':
        return this.unpin(effect.reason);
      default:
        return;
    }
  }

  private resetSettings(): void {
    this.settings.clear();
    for (const [name, statement] of this.startup) this.settings.set(name, statement);
    this.key = null;
  }

  private discardAll(): void {
    this.resetSettings();
    this.listening.clear();
    this.holdCursors.clear();
    this.sqlPrepared.clear();
    this.advisoryLocks = 0;
    this.advisoryRecheck = false;
    // PREPARE TRANSACTION and LOAD stay: DISCARD ALL does not undo them.
    for (const reason of ['listen', 'advisory-lock', 'temp-table', 'with-hold-cursor', 'sql-prepare', 'session-state'] as const) this.unpin(reason);
  }

  /** The server confirmed this session holds no advisory lock any more (or still does). */
  advisoryChecked(released: boolean): void {
    this.advisoryRecheck = false;
    // A lock staged since the check was asked keeps the pin whatever the answer.
    if (released && this.advisoryLocks === 0) this.unpin('advisory-lock');
    else this.advisoryLocks = Math.max(this.advisoryLocks, 1);
  }

  private pin(reason: PinReason): void {
    const count = this.pins.get(reason) ?? 0;
    if (count === 0) this.onPin(reason);
    this.pins.set(reason, count + 1);
  }

  private unpin(reason: PinReason): void {
    this.pins.delete(reason);
  }

  private listen(channel: string): void {
    this.listening.add(channel);
    this.pin('listen');
  }

  private lockAdvisory(): void {
    this.advisoryLocks++;
    this.pin('advisory-lock');
  }

  private holdCursor(name: string): void {
    this.holdCursors.add(name);
    this.pin('with-hold-cursor');
  }

  private prepareSql(name: string): void {
    this.sqlPrepared.add(name);
    this.pin('sql-prepare');
  }
}

/** `-c name=value` and `--name=value` pairs of the startup `options` parameter. */
export function parseOptions(options: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const words = options.match(/(?:\\.|\S)+/g) ?? [];
  for (let i = 0; i < words.length; i++) {
    let word = words[i]!.replace(/\\(.)/g, '$1');
    if (word === '-c' && i + 1 < words.length) word = words[++i]!.replace(/\\(.)/g, '$1');
    else if (word.startsWith('-c')) word = word.slice(2);
    else if (word.startsWith('--')) word = word.slice(2);
    else continue;
    const eq = word.indexOf('=');
    if (eq > 0) out.push([word.slice(0, eq).replaceAll('-', '_'), word.slice(eq + 1)]);
  }
  return out;
}

function setConfig(name: string, value: string): string {
  return `SELECT pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, false)`;
}


export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
