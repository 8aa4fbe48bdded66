// Which host serves a request: the policy half of "mechanics apart from policy". Pure and
// synchronous: it reads a snapshot of host health (HostView[], published by the health loop) and
// returns a host plus a short named reason (a log field and metric label). It never probes.
//
// Invariants:
// - A host is usable when it is up, its circuit breaker is not open, and the request does not
//   avoid it. Never ban every host: when all hosts are down, `up` is ignored (the probes may be
//   what is failing; trying beats refusing), but open breakers still are.
// - The primary is decided on up hosts alone (breakers and `avoid` then decide whether it can be
//   used now, never who it is): the one host with role primary; of several, the ones whose last
//   probe succeeded (failures 0): exactly one such is the primary (the others are an old primary
//   whose failures have not reached the threshold yet), more than one is a split brain and writes
//   are refused.
// - Reads go to a usable replica with weight > 0, lag within every configured bound (unknown lag
//   counts as lagging when a bound is set) and, when asked, replayLsn >= minLsn (unknown replayLsn
//   counts as not replayed). Weight applies to replica choice only; readsFromPrimary governs reads
//   from the primary. Among those, replicas whose last probe and last connect worked come first:
//   a replica that just stopped answering gets no reads while another one can take them, long
//   before enough probes have failed to mark it down.
// - The only state is the smooth weighted round-robin counters per host id, so round-robin is
//   deterministic for a given sequence of snapshots.

export type LoadBalance = 'round-robin' | 'random' | 'least-connections';

export interface HostView {
  /** "host:port" */
  id: string;
  role: 'primary' | 'replica' | 'unknown';
  up: boolean;
  /** >= 0; 0 = never chosen for reads. */
  weight: number;
  /** For least-connections. */
  activeConnections: number;
  /** Replicas: replay lag. */
  lagBytes?: number;
  lagMs?: number;
  /** Replicas: last replayed LSN (for read-your-writes). */
  replayLsn?: bigint;
  /** Consecutive failed probes (0 or absent: the last probe succeeded). */
  failures?: number;
  /** The host's circuit breaker (absent: closed). An open breaker makes the host unusable. */
  breaker?: 'closed' | 'open' | 'half-open';
  /** Consecutive failed connects from the pools (0 or absent: the last one worked). */
  connectFailures?: number;
}

/** What a choice must respect besides health: hosts not to use (a retry after a failure there). */
export interface ChoiceNeeds {
  /** Reads only: the replica must have replayed WAL up to here. */
  minLsn?: bigint | undefined;
  avoid?: readonly string[] | undefined;
}

/** Who the primary is among `hosts` (already filtered to the ones considered up). */
export type PrimaryClaim<H extends HostView> = { kind: 'one'; host: H } | { kind: 'none' } | { kind: 'two'; hosts: H[] };

/** The split-brain rule (see the file comment), shared with the health loop's failover tracking. */
export function claimPrimary<H extends HostView>(hosts: readonly H[]): PrimaryClaim<H> {
  const primaries = hosts.filter((host) => host.role === 'primary');
  if (primaries.length === 0) return { kind: 'none' };
  if (primaries.length === 1) return { kind: 'one', host: primaries[0]! };
  const answering = primaries.filter((host) => (host.failures ?? 0) === 0);
  if (answering.length === 1) return { kind: 'one', host: answering[0]! };
  return { kind: 'two', hosts: answering.length > 1 ? answering : primaries };
}

/**
 * claimPrimary over consideredUp(hosts), without building either array in the common case of
 * one primary (a write asks this for every transaction); several claimants go to claimPrimary.
 */
function primaryOf<H extends HostView>(hosts: readonly H[]): H | 'no-primary' | 'two-primaries' {
  const anyUp = hosts.some((host) => host.up);
  let found: H | undefined;
  let claimants = 0;
  for (const host of hosts) {
    if (countsAsUp(host, anyUp) && host.role === 'primary') {
      found ??= host;
      claimants++;
    }
  }
  if (found === undefined) return 'no-primary';
  if (claimants === 1) return found;
  const claim = claimPrimary(consideredUp(hosts));
  return claim.kind === 'one' ? claim.host : claim.kind === 'two' ? 'two-primaries' : 'no-primary';
}

/** The hosts routing treats as up: the up ones, or all of them when every host is down. */
export function consideredUp<H extends HostView>(hosts: readonly H[]): readonly H[] {
  const up = hosts.filter((host) => host.up);
  return up.length > 0 ? up : hosts;
}

/** Whether consideredUp(hosts) holds `host`, `anyUp` saying whether any of the hosts is up (for loops that build no array). */
function countsAsUp(host: HostView, anyUp: boolean): boolean {
  return host.up || !anyUp;
}

/** Whether the host's last probe and last connect worked. */
function answering(host: HostView): boolean {
  return (host.failures ?? 0) === 0 && (host.connectFailures ?? 0) === 0;
}

/** usableReplicas' reason, by the last filter any replica passed (none, up, weighted, within lag). */
const NO_REPLICA: readonly NoReplicaReason[] = ['no-replica-up', 'all-weight-zero', 'all-lagging', 'lsn-not-replayed'];

function usableNow(host: HostView, avoid: readonly string[] | undefined): boolean {
  return host.breaker !== 'open' && !(avoid?.includes(host.id) ?? false);
}

export interface ChoiceOptions {
  loadBalance: LoadBalance;
  /** A replica lagging more than either bound is skipped. */
  maxReplicaLag: { bytes?: number; ms?: number };
  readsFromPrimary: 'fallback' | 'never' | 'always';
  /** Injectable source of [0, 1) numbers for 'random'; defaults to Math.random. */
  random?: () => number;
}

export type Choice = { host: HostView; reason: string } | { host: null; reason: string };

/** Why no replica could serve a read, in filter order: the first stage that left none. */
export type NoReplicaReason = 'no-replica-up' | 'all-weight-zero' | 'all-lagging' | 'lsn-not-replayed';

/** Why no primary could take a write. */
export type NoPrimaryReason = 'no-primary' | 'two-primaries' | 'primary-unavailable';

export class HostChooser {
  private options: ChoiceOptions;
  /** Smooth weighted round-robin: current weight per host id (nginx's `current_weight`). */
  private readonly current = new Map<string, number>();
  /** The last choice of a usable primary, handed out again while it stays the primary. */
  private primaryChoice: Choice | null = null;
  /** usableReplicas' answers, reused: every read asks, and pick() reads them at once. */
  private readonly usable: HostView[] = [];
  private readonly usableAnswering: HostView[] = [];

  constructor(options: ChoiceOptions) {
    this.options = options;
  }

  /** Config reload: new policy; round-robin counters are kept so the rotation carries on. */
  setOptions(options: ChoiceOptions): void {
    this.options = options;
  }

  /**
   * The primary, when it can be used now. Reasons when not: no-primary, two-primaries (split
   * brain), primary-unavailable (its breaker is open, or the request avoids it).
   */
  primary(hosts: readonly HostView[], need: ChoiceNeeds = {}): Choice {
    const primary = primaryOf(hosts);
    if (typeof primary === 'string') return { host: null, reason: primary satisfies NoPrimaryReason };
    if (!usableNow(primary, need.avoid)) return { host: null, reason: 'primary-unavailable' satisfies NoPrimaryReason };
    // Every write asks: the answer is the same object while the primary is (callers never change a Choice).
    let choice = this.primaryChoice;
    if (choice?.host !== primary) this.primaryChoice = choice = { host: primary, reason: 'primary' };
    return choice;
  }

  /** A host for a read, per loadBalance and readsFromPrimary. */
  replica(hosts: readonly HostView[], need: ChoiceNeeds = {}): Choice {
    this.forgetAbsent(hosts);
    const { readsFromPrimary } = this.options;
    if (readsFromPrimary === 'always') return this.withReason(this.primary(hosts, need), 'always-primary');
    const usable = this.usableReplicas(hosts, need);
    if (typeof usable !== 'string') return { host: this.pick(usable), reason: 'replica' };
    if (readsFromPrimary === 'never') return { host: null, reason: `no-replica:${usable}` };
    const primary = this.primary(hosts, need);
    if (primary.host === null) return { host: null, reason: `no-replica:${usable},${primary.reason}` };
    return { host: primary.host, reason: `fallback:${usable}` };
  }

  /**
   * The replicas a read may use (the answering ones of them when there are any), or why there is
   * none: the first filter, in order, that left none. One pass that builds no array (every read
   * asks): the answer holds until the next call.
   */
  private usableReplicas(hosts: readonly HostView[], need: ChoiceNeeds): readonly HostView[] | NoReplicaReason {
    const { minLsn, avoid } = need;
    const anyUp = hosts.some((host) => host.up);
    const usable = this.usable;
    const usableAnswering = this.usableAnswering;
    usable.length = 0;
    usableAnswering.length = 0;
    let passed = 0;
    for (const host of hosts) {
      if (!countsAsUp(host, anyUp) || host.role !== 'replica' || !usableNow(host, avoid)) continue;
      if (!(Number.isFinite(host.weight) && host.weight > 0)) {
        passed = Math.max(passed, 1);
        continue;
      }
      if (!this.lagWithinBounds(host)) {
        passed = Math.max(passed, 2);
        continue;
      }
      if (minLsn !== undefined && !(host.replayLsn !== undefined && host.replayLsn >= minLsn)) {
        passed = 3;
        continue;
      }
      usable.push(host);
      if (answering(host)) usableAnswering.push(host);
    }
    if (usable.length === 0) return NO_REPLICA[passed]!;
    return usableAnswering.length > 0 ? usableAnswering : usable;
  }

  private lagWithinBounds(host: HostView): boolean {
    const { bytes, ms } = this.options.maxReplicaLag;
    if (bytes !== undefined && !(host.lagBytes !== undefined && host.lagBytes <= bytes)) return false;
    if (ms !== undefined && !(host.lagMs !== undefined && host.lagMs <= ms)) return false;
    return true;
  }

  private pick(candidates: readonly HostView[]): HostView {
    switch (this.options.loadBalance) {
      case 'round-robin':
        return this.smoothRoundRobin(candidates);
      case 'random':
        return weightedRandom(candidates, this.options.random ?? Math.random);
      case 'least-connections':
        return this.smoothRoundRobin(leastLoaded(candidates));
    }
  }

  /**
   * nginx's smooth weighted round-robin: every candidate's current weight grows by its weight,
   * the largest (first on ties) is chosen and loses the total. Weights 5,1,1 give a,a,b,a,c,a,a.
   */
  private smoothRoundRobin(candidates: readonly HostView[]): HostView {
    let best: HostView | undefined;
    let bestCurrent = -Infinity;
    let total = 0;
    for (const host of candidates) {
      const current = (this.current.get(host.id) ?? 0) + host.weight;
      this.current.set(host.id, current);
      total += host.weight;
      if (current > bestCurrent) {
        best = host;
        bestCurrent = current;
      }
    }
    if (best === undefined) throw new Error('smoothRoundRobin needs at least one candidate');
    this.current.set(best.id, bestCurrent - total);
    return best;
  }

  /** Drops round-robin counters of hosts no longer in the snapshot, so removed hosts don't leak. */
  private forgetAbsent(hosts: readonly HostView[]): void {
    if (this.current.size <= hosts.length) return;
    const present = new Set(hosts.map((host) => host.id));
    for (const id of this.current.keys()) if (!present.has(id)) this.current.delete(id);
  }

  private withReason(choice: Choice, reason: string): Choice {
    return choice.host === null ? choice : { host: choice.host, reason };
  }
}

function weightedRandom(candidates: readonly HostView[], random: () => number): HostView {
  const total = candidates.reduce((sum, host) => sum + host.weight, 0);
  let point = random() * total;
  for (const host of candidates) {
    point -= host.weight;
    if (point < 0) return host;
  }
  return candidates[candidates.length - 1]!; // random() returned 1 or rounding: the last one
}

/** Candidates with the fewest activeConnections per unit weight (compared without division). */
function leastLoaded(candidates: readonly HostView[]): HostView[] {
  let least: HostView[] = [];
  for (const host of candidates) {
    const first = least[0];
    const order = first === undefined ? -1 : host.activeConnections * first.weight - first.activeConnections * host.weight;
    if (order < 0) least = [host];
    else if (order === 0) least.push(host);
  }
  return least;
}

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;
const MAX_LSN = (1n << 64n) - 1n;

/** '16/B374D848' -> 0x16_B374D848n. Accepts zero-padded halves; throws on anything else. */
export function parseLsn(text: string): bigint {
  const match = LSN_TEXT.exec(text);
  if (match === null) throw new Error(`invalid LSN ${JSON.stringify(text)}: expected two hex numbers like 16/B374D848`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** 0x16_B374D848n -> '16/B374D848' (Postgres's %X/%X). */
export function formatLsn(lsn: bigint): string {
  if (lsn < 0n || lsn > MAX_LSN) throw new RangeError(`LSN out of range: ${lsn}`);
  const hex = (part: bigint): string => part.toString(16).toUpperCase();
  return `${hex(lsn >> 32n)}/${hex(lsn & 0xffffffffn)}`;
}
