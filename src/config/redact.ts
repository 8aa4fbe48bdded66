// Secret redaction for anything that shows a config (check-config, GET /config, SHOW CONFIG):
// a deep copy in which every secret is "[redacted]". Secrets are recognised by key name, so new
// secret keys are covered as long as their name says what they are: any key containing
// "password", "token" or "secret" (credential passwords, clientAuth user passwords and verifiers,
// admin.token, ...). Non-secret values are copied unchanged.

import YAML from 'yaml';
import type { Config } from './schema.ts';

export const REDACTED = '[redacted]';

const SECRET_KEY = /password|token|secret/i;

/** True when a key's value must never be shown or logged. */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

function redactValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactValue);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (item === undefined) continue;
    out[key] = isSecretKey(key) ? REDACTED : redactValue(item);
  }
  return out;
}

/** A deep, unfrozen copy of `config` with every secret replaced by "[redacted]". */
export function redactConfig(config: Config | unknown): unknown {
  return redactValue(config);
}

/**
 * YAML text of the redacted config. Durations print as milliseconds and sizes as bytes (bare
 * numbers, which the loader reads back the same); routing.maxReplicaLag prints as `<n>ms`/`<n>B`.
 */
export function formatConfig(config: Config): string {
  const redacted = redactConfig(config) as { routing?: { maxReplicaLag?: { ms?: number; bytes?: number } } };
  const lag = redacted.routing?.maxReplicaLag;
  if (redacted.routing && lag) {
    redacted.routing.maxReplicaLag = (lag.ms !== undefined ? `${lag.ms}ms` : `${lag.bytes}B`) as never;
  }
  return YAML.stringify(redacted);
}
