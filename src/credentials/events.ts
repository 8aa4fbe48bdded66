// What rotation publishes: credential refreshes (by provider and result), rejected logins and how
// they were retried, and TLS material reloads. Each event is logged once here and counted in
// RotationCounters, which the metrics read; neither ever sees a secret.

import type { Logger } from 'pino';
import type { CredentialEvent } from './cache.ts';
import type { TlsEvent } from './tls-material.ts';

export type RotationEvent = CredentialEvent | TlsEvent;

export class RotationCounters {
  private readonly counts = new Map<string, number>();

  record(event: RotationEvent): void {
    const key = counterKey(event);
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /**
   * Counts so far, keyed `refresh:<provider>:<ok|failed>`, `rejected:<provider>:<retry>` and
   * `tls:<upstream|listen>:<ok|failed>`.
   */
  snapshot(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

function counterKey(event: RotationEvent): string {
  switch (event.type) {
    case 'credential-refreshed':
      return `refresh:${event.provider}:ok`;
    case 'credential-refresh-failed':
      return `refresh:${event.provider}:failed`;
    case 'credential-rejected':
      return `rejected:${event.provider}:${event.retry}`;
    case 'tls-reloaded':
      return `tls:${event.scope}:ok`;
    case 'tls-reload-failed':
      return `tls:${event.scope}:failed`;
  }
}

/** Logs a credential event at the level its consequence deserves (TLS material logs its own). */
export function logCredentialEvent(log: Logger, event: CredentialEvent): void {
  switch (event.type) {
    case 'credential-refreshed': {
      const fields = { event: event.type, provider: event.provider, login: event.login, reason: event.reason, changed: event.changed, expiresAt: event.expiresAt?.toISOString() };
      // A scheduled refresh that changed nothing is routine; a new secret is worth a line.
      if (event.changed) return log.info(fields, event.reason === 'first-use' ? 'upstream credentials fetched' : 'upstream credentials rotated');
      return log.debug(fields, 'upstream credentials refreshed');
    }
    case 'credential-refresh-failed': {
      const kept = event.lastGoodUntil === null ? 'no valid secret to fall back on' : `keeping the last good secret${event.lastGoodUntil ? ` (valid until ${event.lastGoodUntil.toISOString()})` : ''}`;
      return log.warn({ event: event.type, provider: event.provider, login: event.login, reason: event.reason, err: event.error }, `refreshing upstream credentials failed: ${kept}`);
    }
    case 'credential-rejected':
      return log.warn(
        { event: event.type, provider: event.provider, login: event.login, retry: event.retry },
        event.retry === 'none' ? 'the server rejected the upstream credentials and no other secret is available' : `the server rejected the upstream credentials: retrying with the ${event.retry} secret`,
      );
  }
}
