// What the server will answer to the messages sent for a client, in order, so that responses
// can be matched to requests while they stream by: where a synthesized ParseComplete belongs,
// which Parse failed, and what an ErrorResponse skips (in the extended protocol the server
// ignores everything after an error up to the next Sync).
//
// Asynchronous messages (NoticeResponse, NotificationResponse, ParameterStatus) belong to no
// request and never advance the plan. Pure bookkeeping: no sockets.

import type { ClientStatement } from './statements.ts';

/** What the server answers a message with (added with add()). */
export type PlanEntry =
  /**
   * `name`: the server statement it makes (unnamed: none), which the ambassador counts as held
   * from the moment it is sent. `refusal`: a Parse refused by the ambassador (REFUSED_PARSE); the
   * client's error, given in place of the server's.
   */
  | { kind: 'parse'; name?: string; onError?: () => void; refusal?: Buffer }
  | { kind: 'bind'; statement?: string }
  | { kind: 'close' }
  /** `shows`: the client's statement described (of it, or of a portal bound from it), whose shape its answer tells (result-shapes.ts). */
  | { kind: 'describe-statement'; sawParameters?: boolean; shows?: ClientStatement }
  | { kind: 'describe-portal'; shows?: ClientStatement }
  /** `drop`: it runs DEALLOCATE ALL or DISCARD ALL (added with addDrop). */
  | { kind: 'execute'; drop?: StatementDrop }
  | { kind: 'sync' }
  /** A simple Query or FunctionCall: everything up to ReadyForQuery. `drop` as for Execute. */
  | { kind: 'query'; drop?: StatementDrop };

/**
 * A DEALLOCATE ALL or DISCARD ALL that a Query or Execute runs. The client's names are forgotten
 * where the request is read (what follows it, in its request and behind it, is read without
 * them); the server's statements where its CommandComplete says it ran (`ran`, which the
 * forwarder sets). When it does not run (refused: DISCARD ALL in a transaction block, either in
 * a failed one; skipped after an error before it; or its server lost first), `undo` gives the
 * client its names back, as Postgres keeps them.
 */
export interface StatementDrop {
  ran: boolean;
  undo(): void;
}

/** A plan entry that runs DEALLOCATE ALL or DISCARD ALL. */
export type DropEntry = Extract<PlanEntry, { kind: 'execute' | 'query' }> & { drop: StatementDrop };

/** A ParseComplete the ambassador makes itself, at its place among the server's answers (addSynthesized); `onError` when it is skipped instead. */
export type SynthesizedEntry = { kind: 'synthesized-parse'; onError?: () => void };

const T = (c: string): number => c.charCodeAt(0);
const ParseComplete = T('1');
const BindComplete = T('2');
const CloseComplete = T('3');
const ParameterDescription = T('t');
const RowDescription = T('T');
const NoData = T('n');
const CommandComplete = T('C');
const EmptyQueryResponse = T('I');
const PortalSuspended = T('s');
const ReadyForQuery = T('Z');

/** The entry of a ParseComplete the ambassador makes itself (addSynthesized). */
const SYNTHESIZED_PARSE: SynthesizedEntry = Object.freeze({ kind: 'synthesized-parse' });

/** What a slot of the plan holds once its entry is dropped (an entry may hold a closure, and what it names). */
const NO_ENTRY: PlanEntry = Object.freeze({ kind: 'sync' });
/** The plan keeps its array for the next answers up to this many slots. */
const KEPT_ENTRIES = 64;

export class ResponsePlan {
  /**
   * The entries not answered yet are `entries[head, tail)`. Once every entry is answered, the
   * next one goes in slot 0 again: the array is kept (one that grows by push from empty is
   * copied into a larger one at 17, 41, 77... entries, some 20 bytes for every entry added).
   */
  private entries: Array<PlanEntry | SynthesizedEntry> = [];
  private head = 0;
  private tail = 0;
  /**
   * At least as many as the synthesized entries not taken yet (one skipped by an error or a
   * ReadyForQuery stays counted until the entries are dropped: clear(), or add() finding them
   * all answered): while it is 0, synthesizedPending, asked after every server message, answers
   * without reading the entries (of several shapes).
   */
  private synthesized = 0;
  /** Parse entries of named server statements not answered yet: parsing() reads no entry while there are none. */
  private namedParses = 0;
  /** Entries that drop the server's statements (addDrop) not answered yet: none is looked for while there are none. */
  private drops = 0;

  get empty(): boolean {
    return this.head >= this.tail;
  }

  /** What the server will answer to the next message sent. */
  add(entry: PlanEntry): void {
    this.push(entry); // first: it may clear the counts, when every entry before it was answered
    if (entry.kind === 'parse' && entry.name !== undefined) this.namedParses++;
  }

  /** What the server will answer to a message that runs DEALLOCATE ALL or DISCARD ALL. */
  addDrop(entry: DropEntry): void {
    this.push(entry);
    this.drops++;
  }

  /** Whether a DEALLOCATE ALL or DISCARD ALL is not answered yet: what the server holds is not known until it is. */
  get dropping(): boolean {
    return this.drops > 0;
  }

  /** The drop of the entry at the head, if it runs DEALLOCATE ALL or DISCARD ALL. */
  get currentDrop(): StatementDrop | undefined {
    const entry = this.drops > 0 ? this.current : undefined;
    return entry?.kind === 'execute' || entry?.kind === 'query' ? entry.drop : undefined;
  }

  /** The server statements that Parses behind the head make (a rare path: a DEALLOCATE ALL ran at the head). */
  parsesBehindHead(): string[] {
    const names: string[] = [];
    for (let i = this.head + 1; i < this.tail; i++) {
      const entry = this.entries[i]!;
      if (entry.kind === 'parse' && entry.name !== undefined) names.push(entry.name);
    }
    return names;
  }

  /** A ParseComplete the ambassador makes itself is due at this point of the answers; `onSkipped` runs if an error skips it. */
  addSynthesized(onSkipped?: () => void): void {
    this.push(onSkipped === undefined ? SYNTHESIZED_PARSE : { kind: 'synthesized-parse', onError: onSkipped });
    this.synthesized++;
  }

  /** The entry the next response belongs to. */
  get current(): PlanEntry | SynthesizedEntry | undefined {
    return this.head < this.tail ? this.entries[this.head] : undefined;
  }

  private push(entry: PlanEntry | SynthesizedEntry): void {
    if (this.head > 0 && this.head === this.tail) this.clear();
    this.entries[this.tail++] = entry;
  }

  /** Whether the next expected response is one the ambassador makes itself. */
  get synthesizedPending(): boolean {
    return this.synthesized > 0 && this.current?.kind === 'synthesized-parse';
  }

  /** Pops the synthesized entries at the head; returns how many ParseCompletes to emit. */
  takeSynthesized(): number {
    let count = 0;
    while (this.synthesized > 0 && this.current?.kind === 'synthesized-parse') {
      this.head++;
      this.synthesized--;
      count++;
    }
    return count;
  }

  /** Whether a Parse of server statement `name` is still unanswered (it may yet fail, or be skipped after an error). */
  parsing(name: string): boolean {
    if (this.namedParses === 0) return false;
    for (let i = this.head; i < this.tail; i++) {
      const entry = this.entries[i]!;
      if (entry.kind === 'parse' && entry.name === name) return true;
    }
    return false;
  }

  /** A server message other than ErrorResponse arrived. */
  complete(type: number): void {
    const entry = this.current;
    if (entry === undefined) return;
    if (type === ReadyForQuery) {
      // Ends the Sync or Query at the head (anything before it was skipped by an error: a Parse
      // there made nothing).
      let end = this.head;
      while (end < this.tail) {
        const kind = this.entries[end++]!.kind;
        if (kind === 'sync' || kind === 'query') break;
      }
      return this.skipTo(end);
    }
    if (ends(entry, type)) {
      if (entry.kind === 'parse' && entry.name !== undefined) this.namedParses--;
      else if (this.drops > 0 && entry.kind === 'execute') this.leave(entry); // ran: its CommandComplete came
      this.head++;
    }
  }

  /** An ErrorResponse arrived: the head failed, and the server skips to the next Sync. */
  fail(): void {
    const entry = this.current;
    if (entry === undefined || entry.kind === 'query' || entry.kind === 'sync') return;
    let end = this.head;
    while (end < this.tail && this.entries[end]!.kind !== 'sync') end++;
    this.skipTo(end);
  }

  /** The server is gone, its answers with it: no Parse not answered yet made anything (onError), no DEALLOCATE ALL dropped anything. */
  abandon(): void {
    this.skipTo(this.tail);
    this.clear();
  }

  /**
   * The entries before `end` are done with, unanswered or (a Sync or Query) ended. Last first:
   * a DEALLOCATE ALL that did not run gives the client back the names it forgot after the Parses
   * behind it gave up theirs, and before those in front of it do (that made nothing either).
   */
  private skipTo(end: number): void {
    for (let i = end - 1; i >= this.head; i--) this.leave(this.entries[i]!);
    this.head = end;
  }

  /** An entry leaves the plan: a Parse not answered made nothing; a drop not run (StatementDrop.ran) is undone. */
  private leave(entry: PlanEntry | SynthesizedEntry): void {
    if (entry.kind === 'parse' || entry.kind === 'synthesized-parse') return this.parseUnmade(entry);
    if (this.drops === 0 || (entry.kind !== 'execute' && entry.kind !== 'query') || entry.drop === undefined) return;
    this.drops--;
    if (!entry.drop.ran) entry.drop.undo();
  }

  /** A Parse that made nothing (failed, skipped, or its server lost): its entry is done with. */
  private parseUnmade(entry: (PlanEntry & { kind: 'parse' }) | SynthesizedEntry): void {
    if (entry.kind === 'parse' && entry.name !== undefined) this.namedParses--;
    entry.onError?.();
  }

  clear(): void {
    // A long pipeline (thousands of messages before their answers) does not leave its array behind.
    if (this.tail > KEPT_ENTRIES) this.entries = [];
    else for (let i = 0; i < this.tail; i++) this.entries[i] = NO_ENTRY;
    this.head = 0;
    this.tail = 0;
    this.synthesized = 0;
    this.namedParses = 0;
    this.drops = 0;
  }
}

function ends(entry: PlanEntry | SynthesizedEntry, type: number): boolean {
  switch (entry.kind) {
    case 'parse':
      return type === ParseComplete;
    case 'bind':
      return type === BindComplete;
    case 'close':
      return type === CloseComplete;
    case 'describe-portal':
      return type === RowDescription || type === NoData;
    case 'describe-statement':
      if (type === ParameterDescription) entry.sawParameters = true;
      return type === RowDescription || type === NoData;
    case 'execute':
      return type === CommandComplete || type === EmptyQueryResponse || type === PortalSuspended;
    default:
      return false;
  }
}
