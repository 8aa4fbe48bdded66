// Backend (server -> client) messages: encoders for what the ambassador itself sends to clients,
// and decoders for the few server messages it inspects (R, E/N, S, K, Z, v; T and n for the shape
// of a described statement's result).
// Pure: no sockets, timers or logging.

import { Buffer } from 'node:buffer';
import { MessageWriter, PayloadReader } from './writer.ts';

export const BackendType = {
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  ParameterStatus: 0x53, // S
  ReadyForQuery: 0x5a, // Z
  ErrorResponse: 0x45, // E
  NoticeResponse: 0x4e, // N
  NegotiateProtocolVersion: 0x76, // v
  NotificationResponse: 0x41, // A
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  CopyBothResponse: 0x57, // W
  RowDescription: 0x54, // T
  DataRow: 0x44, // D
  CommandComplete: 0x43, // C
  ParseComplete: 0x31, // 1
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  NoData: 0x6e, // n
  ParameterDescription: 0x74, // t
} as const;

export const AuthCode = {
  Ok: 0,
  KerberosV5: 2,
  CleartextPassword: 3,
  MD5Password: 5,
  GSS: 7,
  GSSContinue: 8,
  SSPI: 9,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

/** Transaction status carried by ReadyForQuery: idle, in a transaction block, in a failed one. */
export type TransactionStatus = 'I' | 'T' | 'E';

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';
  code: string;
  message: string;
  detail?: string | undefined;
  hint?: string | undefined;
  /** The server routine that raised it (field R): some drivers act on it (postgres.js retries after RevalidateCachedQuery). */
  routine?: string | undefined;
}

// ---- encoders (ambassador -> client) ----

export function encodeErrorResponse(fields: ErrorFields): Buffer {
  return encodeNoticeLike(BackendType.ErrorResponse, fields);
}

export function encodeNoticeResponse(fields: ErrorFields): Buffer {
  return encodeNoticeLike(BackendType.NoticeResponse, fields);
}

function encodeNoticeLike(type: number, fields: ErrorFields): Buffer {
  const w = new MessageWriter();
  w.byte(0x53).cstring(fields.severity); // S
  w.byte(0x56).cstring(fields.severity); // V (non-localized)
  w.byte(0x43).cstring(fields.code); // C
  w.byte(0x4d).cstring(fields.message); // M
  if (fields.detail) w.byte(0x44).cstring(fields.detail); // D
  if (fields.hint) w.byte(0x48).cstring(fields.hint); // H
  if (fields.routine) w.byte(0x52).cstring(fields.routine); // R
  w.byte(0);
  return w.finish(type);
}

export function encodeAuthenticationOk(): Buffer {
  return new MessageWriter().int32(AuthCode.Ok).finish(BackendType.Authentication);
}

export function encodeAuthenticationCleartext(): Buffer {
  return new MessageWriter().int32(AuthCode.CleartextPassword).finish(BackendType.Authentication);
}

export function encodeAuthenticationMD5(salt: Buffer): Buffer {
  return new MessageWriter().int32(AuthCode.MD5Password).bytes(salt).finish(BackendType.Authentication);
}

export function encodeAuthenticationSASL(mechanisms: readonly string[]): Buffer {
  const w = new MessageWriter().int32(AuthCode.SASL);
  for (const m of mechanisms) w.cstring(m);
  return w.byte(0).finish(BackendType.Authentication);
}

export function encodeAuthenticationSASLContinue(data: Buffer): Buffer {
  return new MessageWriter().int32(AuthCode.SASLContinue).bytes(data).finish(BackendType.Authentication);
}

export function encodeAuthenticationSASLFinal(data: Buffer): Buffer {
  return new MessageWriter().int32(AuthCode.SASLFinal).bytes(data).finish(BackendType.Authentication);
}

export function encodeParameterStatus(name: string, value: string): Buffer {
  return new MessageWriter().cstring(name).cstring(value).finish(BackendType.ParameterStatus);
}

export function encodeBackendKeyData(processId: number, secretKey: number): Buffer {
  return new MessageWriter().int32(processId).int32(secretKey).finish(BackendType.BackendKeyData);
}

export function encodeReadyForQuery(status: TransactionStatus): Buffer {
  return new MessageWriter().byte(status.charCodeAt(0)).finish(BackendType.ReadyForQuery);
}

/** Answers with no fields, the same bytes every time (shared: never written to). */
export const PARSE_COMPLETE: Buffer = new MessageWriter().finish(BackendType.ParseComplete);
export const BIND_COMPLETE: Buffer = new MessageWriter().finish(BackendType.BindComplete);
export const CLOSE_COMPLETE: Buffer = new MessageWriter().finish(BackendType.CloseComplete);
export const NO_DATA: Buffer = new MessageWriter().finish(BackendType.NoData);
/** ParameterDescription of a statement with no parameters. */
export const NO_PARAMETERS: Buffer = new MessageWriter().int16(0).finish(BackendType.ParameterDescription);

export function encodeCommandComplete(tag: string): Buffer {
  return new MessageWriter().cstring(tag).finish(BackendType.CommandComplete);
}

/** RowDescription of text columns (type text, oid 25), as the ambassador's own answers use. */
export function encodeTextRowDescription(columns: readonly string[]): Buffer {
  const w = new MessageWriter().int16(columns.length);
  for (const name of columns) w.cstring(name).int32(0).int16(0).int32(25).int16(-1).int32(-1).int16(0);
  return w.finish(BackendType.RowDescription);
}

export function encodeDataRow(values: ReadonlyArray<string | null>): Buffer {
  const w = new MessageWriter().int16(values.length);
  for (const value of values) {
    if (value === null) w.int32(-1);
    else {
      const bytes = Buffer.from(value, 'utf8');
      w.int32(bytes.length).bytes(bytes);
    }
  }
  return w.finish(BackendType.DataRow);
}

export function encodeNegotiateProtocolVersion(newestMinor: number, unsupportedOptions: readonly string[]): Buffer {
  const w = new MessageWriter().int32((3 << 16) | newestMinor).int32(unsupportedOptions.length);
  for (const option of unsupportedOptions) w.cstring(option);
  return w.finish(BackendType.NegotiateProtocolVersion);
}

// ---- decoders (server -> ambassador) ----

export type AuthenticationRequest =
  | { code: typeof AuthCode.Ok }
  | { code: typeof AuthCode.CleartextPassword }
  | { code: typeof AuthCode.MD5Password; salt: Buffer }
  | { code: typeof AuthCode.SASL; mechanisms: string[] }
  | { code: typeof AuthCode.SASLContinue; data: Buffer }
  | { code: typeof AuthCode.SASLFinal; data: Buffer }
  | { code: number; unsupported: true };

/** Decodes an 'R' payload. Throws RangeError on a malformed message. */
export function decodeAuthentication(payload: Buffer): AuthenticationRequest {
  const r = new PayloadReader(payload);
  const code = r.int32();
  switch (code) {
    case AuthCode.Ok:
      return { code: AuthCode.Ok };
    case AuthCode.CleartextPassword:
      return { code: AuthCode.CleartextPassword };
    case AuthCode.MD5Password:
      return { code, salt: Buffer.from(r.bytes(4)) };
    case AuthCode.SASL: {
      const mechanisms: string[] = [];
      for (;;) {
        const m = r.cstring();
        if (m === '') break;
        mechanisms.push(m);
        if (mechanisms.length > 32) throw new RangeError('too many SASL mechanisms');
      }
      return { code, mechanisms };
    }
    case AuthCode.SASLContinue:
      return { code: AuthCode.SASLContinue, data: Buffer.from(r.rest()) };
    case AuthCode.SASLFinal:
      return { code: AuthCode.SASLFinal, data: Buffer.from(r.rest()) };
    default:
      return { code, unsupported: true };
  }
}

/** Decodes the fields of an ErrorResponse or NoticeResponse payload, keyed by field letter. */
export function decodeErrorFields(payload: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  const r = new PayloadReader(payload);
  while (r.remaining > 0) {
    const code = r.byte();
    if (code === 0) break;
    fields.set(String.fromCharCode(code), r.cstring());
  }
  return fields;
}

/** Reads severity, SQLSTATE and message of an error payload, with safe fallbacks. */
export function summarizeError(payload: Buffer): { severity: string; code: string; message: string } {
  try {
    const f = decodeErrorFields(payload);
    return { severity: f.get('V') ?? f.get('S') ?? 'ERROR', code: f.get('C') ?? 'XX000', message: f.get('M') ?? '' };
  } catch {
    return { severity: 'ERROR', code: 'XX000', message: 'malformed error message from server' };
  }
}

export function decodeParameterStatus(payload: Buffer): { name: string; value: string } {
  const r = new PayloadReader(payload);
  return { name: r.cstring(), value: r.cstring() };
}

export function decodeBackendKeyData(payload: Buffer): { processId: number; secretKey: Buffer } {
  const r = new PayloadReader(payload);
  const processId = r.int32();
  const secretKey = Buffer.from(r.rest());
  if (secretKey.length < 4 || secretKey.length > 256) throw new RangeError(`invalid cancel key length ${secretKey.length}`);
  return { processId, secretKey };
}

/** A DataRow's columns as text (null for SQL NULL). */
export function decodeDataRow(payload: Buffer): Array<string | null> {
  const r = new PayloadReader(payload);
  const count = r.int16();
  const values: Array<string | null> = [];
  for (let i = 0; i < count; i++) {
    const length = r.int32();
    values.push(length === -1 ? null : r.bytes(length).toString('utf8'));
  }
  return values;
}

/**
 * What a prepared statement's cached plan fixes of its result, as one string (equal shapes, equal
 * strings): the number of columns, then each column's name, type OID and type modifier, from a
 * RowDescription. Postgres answers 0A000 "cached plan must not change result type" when these
 * change under a statement; the table OID, column number and format code of each column are left
 * out (a portal's formats are the Bind's choice). NoData (no result) is NO_RESULT.
 */
export type ResultShape = string;

/** The shape of a statement that returns no rows (NoData). */
export const NO_RESULT: ResultShape = 'NoData';

/** The ResultShape of a RowDescription whose payload is `bytes[from, to)`; null when it is malformed. */
export function decodeResultShape(bytes: Buffer, from = 0, to = bytes.length): ResultShape | null {
  if (to - from < 2) return null;
  const count = bytes.readUInt16BE(from);
  let shape = String(count);
  let at = from + 2;
  for (let i = 0; i < count; i++) {
    let nameEnd = at;
    while (nameEnd < to && bytes[nameEnd] !== 0) nameEnd++;
    // The name's NUL, then table OID (4), column number (2), type OID (4), size (2), modifier (4), format (2).
    if (nameEnd + 19 > to) return null;
    shape += `\0${bytes.toString('latin1', at, nameEnd)}\0${bytes.readUInt32BE(nameEnd + 7)}\0${bytes.readInt32BE(nameEnd + 13)}`;
    at = nameEnd + 19;
  }
  return at === to ? shape : null;
}

/** The transaction status of a ReadyForQuery whose payload is `bytes[from, to)` (all of it by default). */
export function decodeReadyForQuery(bytes: Buffer, from = 0, to = bytes.length): TransactionStatus {
  const byte = to - from === 1 ? bytes[from]! : 0;
  // Compared as bytes: String.fromCharCode would make a string only to compare it.
  if (byte === 0x49) return 'I';
  if (byte === 0x54) return 'T';
  if (byte === 0x45) return 'E';
  throw new RangeError(`invalid transaction status '${to - from === 1 ? String.fromCharCode(byte) : ''}'`);
}
