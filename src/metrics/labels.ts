// Label values derived from what the core reports, kept to small, bounded sets so a scrape never
// grows with the traffic: routing and pin reasons lose their detail after the first ':'
// (`volatile-function:foo` -> `volatile-function`) and stop at a cap ('other' beyond it);
// SQLSTATEs become their class; pool keys become the host they belong to.
//
// PURE: no prom-client here, so the rules are testable on their own.

/** Label value for reasons past the cap. */
export const OTHER_REASON = 'other';

/** Label value for an empty reason. */
export const NO_REASON = 'none';

/** Label value for an SQLSTATE that is not five characters of [0-9A-Z]. */
export const MALFORMED_CLASS = 'XX';

/** The part of a reason before its first ':', or NO_REASON when that is empty. */
export function reasonLabel(reason: string): string {
  const colon = reason.indexOf(':');
  const head = colon < 0 ? reason : reason.slice(0, colon);
  return head === '' ? NO_REASON : head;
}

/**
 * Maps raw reasons to per-label values of type T (a metric's children), creating each value once.
 * At most `maxLabels` distinct labels, later ones share OTHER_REASON's value; raw reasons are
 * cached up to `maxRaw` (beyond, each call recomputes the label: allocation, still bounded output).
 */
export class ReasonLabels<T> {
  private readonly byRaw = new Map<string, T>();
  private readonly byLabel = new Map<string, T>();

  constructor(
    private readonly create: (label: string) => T,
    private readonly maxLabels = 64,
    private readonly maxRaw = 1024,
  ) {}

  get(raw: string): T {
    const cached = this.byRaw.get(raw);
    if (cached !== undefined) return cached;
    const value = this.forLabel(reasonLabel(raw));
    if (this.byRaw.size < this.maxRaw) this.byRaw.set(raw, value);
    return value;
  }

  /** Each label made so far with its value. */
  entries(): IterableIterator<[string, T]> {
    return this.byLabel.entries();
  }

  /** Distinct labels made so far (OTHER_REASON included once used). */
  get size(): number {
    return this.byLabel.size;
  }

  private forLabel(label: string): T {
    const known = this.byLabel.get(label);
    if (known !== undefined) return known;
    // The cap counts real labels; 'other' itself always fits.
    if (label !== OTHER_REASON && this.byLabel.size >= this.maxLabels) return this.forLabel(OTHER_REASON);
    const value = this.create(label);
    this.byLabel.set(label, value);
    return value;
  }
}

const SQLSTATE = /^[0-9A-Z]{5}$/;

/** The SQLSTATE's class (its first two characters), or MALFORMED_CLASS. */
export function sqlstateClass(sqlstate: unknown): string {
  return typeof sqlstate === 'string' && SQLSTATE.test(sqlstate) ? sqlstate.slice(0, 2) : MALFORMED_CLASS;
}

/**
 * The host ("host:port") of a pool key "<host>:<port>/<database>/<user>". A known host id that
 * prefixes the key wins (the longest: a Unix socket directory contains '/'); otherwise the part
 * before the first '/' that is not empty.
 */
export function poolKeyHost(key: string, knownHosts: Iterable<string> = []): string {
  let best = '';
  for (const id of knownHosts) {
    if (id.length > best.length && key.length > id.length && key.charCodeAt(id.length) === 0x2f && key.startsWith(id)) best = id;
  }
  if (best !== '') return best;
  const slash = key.indexOf('/');
  if (slash > 0) return key.slice(0, slash);
  if (slash < 0) return key;
  // A key starting with '/' (a socket directory we did not know): up to the '/' before database/user.
  const userSlash = key.lastIndexOf('/');
  const dbSlash = key.lastIndexOf('/', userSlash - 1);
  return dbSlash > 0 ? key.slice(0, dbSlash) : key;
}
