// What the server will answer to the messages sent for a client, in order, so that responses
// can be matched to requests while they stream by: where a synthesized ParseComplete belongs,
// which Parse failed, and what an ErrorResponse skips (in the extended protocol the server
// ignores everything after an error up to the next Sync).
//
// Asynchronous messages (NoticeResponse, NotificationResponse, ParameterStatus) belong to no
// request and never advance the plan. Pure bookkeeping: no sockets.

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
  | { kind: 'describe-statement'; sawParameters?: boolean }
  | { kind: 'describe-portal' }
  | { kind: 'execute' }
  | { kind: 'sync' }
  /** A simple Query or FunctionCall: everything up to ReadyForQuery. */
  | { kind: 'query' };

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

  get empty(): boolean {
    return this.head >= this.tail;
  }

  /** What the server will answer to the next message sent. */
  add(entry: PlanEntry): void {
    this.push(entry); // first: it may clear the counts, when every entry before it was answered
    if (entry.kind === 'parse' && entry.name !== undefined) this.namedParses++;
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
      while (this.head < this.tail) {
        const e = this.entries[this.head++]!;
        if (e.kind === 'sync' || e.kind === 'query') return;
        if (e.kind === 'parse' || e.kind === 'synthesized-parse') this.parseUnmade(e);
      }
      return;
    }
    if (ends(entry, type)) {
      if (entry.kind === 'parse' && entry.name !== undefined) this.namedParses--;
      this.head++;
    }
  }

  /** An ErrorResponse arrived: the head failed, and the server skips to the next Sync. */
  fail(): void {
    const entry = this.current;
    if (entry === undefined || entry.kind === 'query' || entry.kind === 'sync') return;
    while (this.head < this.tail) {
      const e = this.entries[this.head];
      if (e!.kind === 'sync') return;
      if (e!.kind === 'parse' || e!.kind === 'synthesized-parse') this.parseUnmade(e!);
      this.head++;
    }
  }

  /** The server is gone, its answers with it: no Parse not answered yet made anything (onError). */
  abandon(): void {
    for (let i = this.head; i < this.tail; i++) {
      const e = this.entries[i]!;
      if (e.kind === 'parse' || e.kind === 'synthesized-parse') this.parseUnmade(e);
    }
    this.clear();
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
