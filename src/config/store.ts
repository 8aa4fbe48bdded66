// ConfigStore: holds the current frozen Config and swaps it whole. Readers take `current` when
// they need it (a snapshot that never changes under them); 'change' (next, prev) tells
// subscribers after a swap. A reload that fails keeps the old config and returns the error.

import { EventEmitter } from 'node:events';
import { ConfigError } from '../errors.ts';
import { deepFreeze } from './load.ts';
import type { Config } from './schema.ts';

export type ReloadResult = { readonly ok: true } | { readonly ok: false; readonly error: ConfigError };

interface ConfigStoreEvents {
  change: [next: Config, prev: Config];
}

export class ConfigStore extends EventEmitter<ConfigStoreEvents> {
  #current: Config;

  constructor(initial: Config) {
    super();
    this.#current = deepFreeze(initial);
  }

  /** The config in force now; frozen, never mutated. */
  get current(): Config {
    return this.#current;
  }

  /** Swaps in `next` (frozen) and emits 'change' (next, prev). */
  replace(next: Config): void {
    const prev = this.#current;
    this.#current = deepFreeze(next);
    this.emit('change', this.#current, prev);
  }

  /**
   * Runs `loader`; on success swaps in its config, on failure keeps the current one and returns
   * the error (anything other than a ConfigError is wrapped in one). Errors thrown by 'change'
   * listeners are not load failures and propagate.
   */
  reloadFrom(loader: () => Config): ReloadResult {
    let next: Config;
    try {
      next = loader();
    } catch (err) {
      const error = err instanceof ConfigError ? err : new ConfigError(err instanceof Error ? err.message : String(err));
      return { ok: false, error };
    }
    this.replace(next);
    return { ok: true };
  }
}
