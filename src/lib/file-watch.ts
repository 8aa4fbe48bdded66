// Watching mounted files (password files, certificates) for changes that arrive without notice.
// Kubernetes swaps a secret by re-pointing a `..data` symlink in the mount directory, so the
// watched file's own inode never changes; watching the directory sees the swap, and a content
// comparison decides whether anything really changed. A slow poll covers filesystems where
// inotify says nothing (network mounts, some overlay setups).

import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { systemClock, type Clock, type Timer } from './clock.ts';

export interface FileWatchOptions {
  /** Re-reads every file this often, whatever the directory watches said (ms; default 1000). */
  pollMs?: number;
  /** Waits this long after a directory event before reading, so a write in progress can finish (ms; default 50). */
  settleMs?: number;
  clock?: Clock;
}

const DEFAULT_POLL_MS = 1000;
const DEFAULT_SETTLE_MS = 50;

/**
 * Calls `onChange` with the paths whose contents (or readability) changed since the last look.
 * The baseline is read at construction, so build the watch before reading the files yourself:
 * a change in between is then reported (at worst once too often, never missed).
 */
export class FileWatch {
  private readonly fingerprints = new Map<string, string>();
  private readonly watchers: FSWatcher[] = [];
  private readonly clock: Clock;
  private readonly pollMs: number;
  private readonly settleMs: number;
  private pollTimer: Timer | null = null;
  private settleTimer: Timer | null = null;
  private closed = false;

  constructor(
    paths: readonly string[],
    private readonly onChange: (changed: string[]) => void,
    options: FileWatchOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
    for (const file of new Set(paths)) this.fingerprints.set(file, fingerprint(file));
    for (const dir of new Set([...this.fingerprints.keys()].map((file) => path.dirname(file)))) this.watchDirectory(dir);
    this.schedulePoll();
  }

  /** Looks at every file now; reports changes as a directory event would. */
  check(): string[] {
    if (this.closed) return [];
    const changed: string[] = [];
    for (const [file, before] of this.fingerprints) {
      const now = fingerprint(file);
      if (now === before) continue;
      this.fingerprints.set(file, now);
      changed.push(file);
    }
    if (changed.length > 0) this.onChange(changed);
    return changed;
  }

  close(): void {
    this.closed = true;
    for (const watcher of this.watchers) watcher.close();
    this.watchers.length = 0;
    if (this.pollTimer) this.clock.clearTimeout(this.pollTimer);
    if (this.settleTimer) this.clock.clearTimeout(this.settleTimer);
  }

  private watchDirectory(dir: string): void {
    try {
      const watcher = watch(dir, { persistent: false }, () => this.settleThenCheck());
      // A directory that goes away (or a watch the kernel drops) leaves the poll in charge.
      watcher.on('error', () => watcher.close());
      this.watchers.push(watcher);
    } catch {
      // No such directory yet, or no inotify: the poll still sees changes.
    }
  }

  private settleThenCheck(): void {
    if (this.closed || this.settleTimer) return;
    this.settleTimer = this.clock.setTimeout(() => {
      this.settleTimer = null;
      this.check();
    }, this.settleMs);
    this.settleTimer.unref();
  }

  private schedulePoll(): void {
    if (this.closed) return;
    this.pollTimer = this.clock.setTimeout(() => {
      this.check();
      this.schedulePoll();
    }, this.pollMs);
    this.pollTimer.unref();
  }
}

/** A digest of the contents (never the contents: secrets stay out of memory dumps of this map). */
function fingerprint(file: string): string {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('base64');
  } catch (err) {
    return `unreadable:${(err as NodeJS.ErrnoException).code ?? 'error'}`;
  }
}
