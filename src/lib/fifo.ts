// First-in first-out queues on a ring of slots. Two reasons not to use an Array with push/shift:
// Array.shift copies the whole array once it holds more than ~16k entries (V8), so a queue that a
// client can fill (200,000 pipelined Syncs are 1 MB) would make draining it quadratic and freeze
// the event loop for everyone; and the hot path pushes and shifts one entry per request, which on
// a ring allocates nothing once the ring has room (an array emptied and refilled grows a new
// backing store each time). A ring grows by doubling, and goes back to its first size once it is
// empty, so one burst does not keep a large ring alive for the rest of a session.

/** Slots of a ring that starts small and stays small for a client with a request or two in flight. */
const FIRST_CAPACITY = 4;
/** An empty ring larger than this is given back (a burst of queued requests is over). */
const KEPT_CAPACITY = 64;
/**
 * The slots of a ring that never held anything, shared: a ring of capacity 0 gets slots of its own
 * before its first entry, and an idle client (thousands of them, each with a few queues) keeps none.
 */
const NO_SLOTS: never[] = [];
const NO_NUMBERS = new Float64Array(0);

/** Where entries are, within a ring of `capacity` slots (a power of two): the part both rings share. */
abstract class Ring {
  protected head = 0;
  protected count = 0;

  get length(): number {
    return this.count;
  }

  protected abstract get capacity(): number;
  /** A ring of `capacity` slots holding the current entries from slot 0 on. */
  protected abstract regrow(capacity: number): void;

  /** The slot of the next entry pushed (the ring grows first when full). */
  protected tailSlot(): number {
    if (this.count === this.capacity) this.regrow(Math.max(FIRST_CAPACITY, this.capacity * 2));
    return (this.head + this.count++) & (this.capacity - 1);
  }

  /** The slot of the entry put back in front (the ring grows first when full). */
  protected frontSlot(): number {
    if (this.count === this.capacity) this.regrow(Math.max(FIRST_CAPACITY, this.capacity * 2));
    this.head = (this.head - 1) & (this.capacity - 1);
    this.count++;
    return this.head;
  }

  /** The slot of the oldest entry, taken out of the queue; -1 when it is empty. */
  protected headSlot(): number {
    if (this.count === 0) return -1;
    const slot = this.head;
    this.head = (slot + 1) & (this.capacity - 1);
    if (--this.count === 0) this.head = 0;
    return slot;
  }

  /** After the last entry went: a ring a burst made large goes back to its first size. */
  protected shrinkIfEmpty(): void {
    if (this.count === 0 && this.capacity > KEPT_CAPACITY) this.regrow(FIRST_CAPACITY);
  }

  clear(): void {
    this.head = 0;
    this.count = 0;
    this.regrow(FIRST_CAPACITY);
  }
}

export class Fifo<T> extends Ring {
  private slots: Array<T | undefined> = NO_SLOTS;

  protected get capacity(): number {
    return this.slots.length;
  }

  protected regrow(capacity: number): void {
    const slots = new Array<T | undefined>(capacity).fill(undefined);
    for (let i = 0; i < this.count; i++) slots[i] = this.slots[(this.head + i) & (this.slots.length - 1)];
    this.slots = slots;
    this.head = 0;
  }

  /** The oldest entry, left in place. */
  get first(): T | undefined {
    return this.count === 0 ? undefined : this.slots[this.head];
  }

  push(item: T): void {
    const slot = this.tailSlot(); // first: it may give the ring new slots
    this.slots[slot] = item;
  }

  /** Puts an entry back in front (it was taken and not used). */
  unshift(item: T): void {
    const slot = this.frontSlot(); // first: it may give the ring new slots
    this.slots[slot] = item;
  }

  shift(): T | undefined {
    const slot = this.headSlot();
    if (slot < 0) return undefined;
    const item = this.slots[slot];
    this.slots[slot] = undefined; // the queue no longer keeps it alive
    this.shrinkIfEmpty();
    return item;
  }
}

/** A Fifo of numbers in a Float64Array: an Array would box each fractional number it holds. */
export class NumberFifo extends Ring {
  private slots = NO_NUMBERS;

  protected get capacity(): number {
    return this.slots.length;
  }

  protected regrow(capacity: number): void {
    const slots = new Float64Array(capacity);
    for (let i = 0; i < this.count; i++) slots[i] = this.slots[(this.head + i) & (this.slots.length - 1)]!;
    this.slots = slots;
    this.head = 0;
  }

  /** The oldest entry, left in place. */
  get first(): number | undefined {
    return this.count === 0 ? undefined : this.slots[this.head];
  }

  push(value: number): void {
    const slot = this.tailSlot(); // first: it may give the ring new slots
    this.slots[slot] = value;
  }

  shift(): number | undefined {
    const slot = this.headSlot();
    if (slot < 0) return undefined;
    const value = this.slots[slot]!;
    this.shrinkIfEmpty();
    return value;
  }
}
