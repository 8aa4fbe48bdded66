// Scalar value parsers shared by the config schema and the environment reader: durations, byte
// sizes, ports, integers, booleans and enums. Each parser takes what YAML, an interpolated string
// or an environment variable can hold and returns the normalised value, or undefined when the
// input is not acceptable; `expected` texts say what was wanted, for error messages.
// Invariants: durations are integer milliseconds within what setTimeout accepts (< 2^31 ms);
// byte sizes are integer bytes within an int32 (the wire protocol's length field).

import { Buffer } from 'node:buffer';
import { ConfigError } from '../errors.ts';

/** Largest delay setTimeout honours; longer ones fire at once, so configs may not ask for them. */
export const MAX_DURATION_MS = 2 ** 31 - 1;
/** Largest length a protocol message header can carry (int32). */
export const MAX_BYTE_SIZE = 2 ** 31 - 1;

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const BYTE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

export const DURATION_EXPECTED = 'expected a duration like 250ms, 5s, 10m, 1h or a number of milliseconds';
export const BYTE_SIZE_EXPECTED = 'expected a size like 512kB, 64MB, 1GiB or a number of bytes';

/** Renders a rejected value for an error message: strings quoted, collections named. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

/** A number as written in YAML or as a numeric string ("6432", " 1.5 "); otherwise undefined. */
export function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && /^\s*[+-]?\d+(\.\d+)?\s*$/.test(value)) return Number(value);
  return undefined;
}

/** An integer in [min, max], from a number or a numeric string. */
export function toInteger(value: unknown, min: number, max: number): number | undefined {
  const num = toNumber(value);
  if (num === undefined || !Number.isInteger(num) || num < min || num > max) return undefined;
  return num;
}

/** true/false, also as the strings "true"/"false" (any case). */
export function toBoolean(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (typeof value !== 'string') return undefined;
  const lowered = value.trim().toLowerCase();
  if (lowered === 'true') return true;
  if (lowered === 'false') return false;
  return undefined;
}

/** A number with a unit from `units` (case-insensitive), or a bare number in the base unit. */
function withUnit(value: unknown, units: Readonly<Record<string, number>>, max: number): number | undefined {
  let result: number;
  const bare = toNumber(value);
  if (bare !== undefined) {
    result = bare;
  } else {
    if (typeof value !== 'string') return undefined;
    const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$/.exec(value);
    const factor = match ? units[match[2]!.toLowerCase()] : undefined;
    if (!match || factor === undefined) return undefined;
    result = Number(match[1]) * factor;
  }
  // Float artefacts (0.1s * 1000) are rounded away; a real fraction of the base unit is refused.
  const rounded = Math.round(result * 1e6) / 1e6;
  if (!Number.isInteger(rounded) || rounded < 0 || rounded > max) return undefined;
  return rounded;
}

/** Duration in integer milliseconds, or undefined. */
export function toDurationMs(value: unknown): number | undefined {
  return withUnit(value, DURATION_UNITS, MAX_DURATION_MS);
}

/** Byte size in integer bytes, or undefined. kB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024. */
export function toByteSize(value: unknown): number | undefined {
  return withUnit(value, BYTE_UNITS, MAX_BYTE_SIZE);
}

/**
 * Parses `250ms`, `5s`, `10m`, `1h` or a bare number (milliseconds) to integer milliseconds.
 * Throws ConfigError for anything else, including negatives and durations of 2^31 ms or more.
 */
export function parseDuration(input: string | number): number {
  const ms = toDurationMs(input);
  if (ms === undefined) throw new ConfigError(`${DURATION_EXPECTED}, got ${describeValue(input)}`);
  return ms;
}

/**
 * Parses a byte size: a bare number of bytes, or a number with B, kB, MB, GB (powers of 1000) or
 * KiB, MiB, GiB (powers of 1024); units are case-insensitive. Throws ConfigError otherwise.
 */
export function parseByteSize(input: string | number): number {
  const bytes = toByteSize(input);
  if (bytes === undefined) throw new ConfigError(`${BYTE_SIZE_EXPECTED}, got ${describeValue(input)}`);
  return bytes;
}

/** Replication lag limit: either a time (`10s`, bare numbers are ms) or a WAL distance (`16MB`). */
export type ReplicaLag = { readonly ms: number; readonly bytes?: undefined } | { readonly bytes: number; readonly ms?: undefined };

export const REPLICA_LAG_EXPECTED = 'expected a duration (10s, 500ms) or a WAL size (16MB, 1GiB)';

export function toReplicaLag(value: unknown): ReplicaLag | undefined {
  const ms = toDurationMs(value);
  if (ms !== undefined) return { ms };
  const bytes = toByteSize(value);
  return bytes === undefined ? undefined : { bytes };
}

/** How a client-auth user's password is stored. */
export type PasswordKind = 'plain' | 'scram-sha-256' | 'md5';

const SCRAM_VERIFIER = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2}):([A-Za-z0-9+/]+={0,2})$/;
const MD5_HASH = /^md5[0-9a-f]{32}$/;

/**
 * Classifies a stored password as Postgres does: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`
 * is a SCRAM verifier, `md5` followed by 32 lowercase hex digits an md5 hash, anything else plaintext.
 * Returns undefined for a string that starts like a SCRAM verifier but is malformed.
 */
export function classifyPassword(password: string): PasswordKind | undefined {
  if (password.startsWith('SCRAM-SHA-256$')) {
    const match = SCRAM_VERIFIER.exec(password);
    if (!match || Number(match[1]) < 1) return undefined;
    const keysOk = [match[3]!, match[4]!].every((key) => Buffer.from(key, 'base64').length === 32);
    return keysOk ? 'scram-sha-256' : undefined;
  }
  return MD5_HASH.test(password) ? 'md5' : 'plain';
}
