// Frontend (client -> server) messages: decoders for the ones the ambassador inspects during
// authentication, and encoders for what it sends upstream while authenticating itself.
// Pure: no sockets, timers or logging.

import { MessageWriter, PayloadReader } from './writer.ts';

export const FrontendType = {
  Query: 0x51, // Q
  Parse: 0x50, // P
  Bind: 0x42, // B
  Describe: 0x44, // D
  Execute: 0x45, // E
  Close: 0x43, // C
  Sync: 0x53, // S
  Flush: 0x48, // H
  Terminate: 0x58, // X
  FunctionCall: 0x46, // F
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  /** PasswordMessage, SASLInitialResponse and SASLResponse share this type byte. */
  Password: 0x70, // p
} as const;

/** A PasswordMessage payload: the password as a NUL-terminated string. */
export function decodePasswordMessage(payload: Buffer): string {
  const r = new PayloadReader(payload);
  const password = r.cstring();
  if (r.remaining !== 0) throw new RangeError('trailing bytes after password');
  return password;
}

/** A SASLInitialResponse payload: mechanism name, then the optional initial client data. */
export function decodeSASLInitialResponse(payload: Buffer): { mechanism: string; data: Buffer } {
  const r = new PayloadReader(payload);
  const mechanism = r.cstring();
  const length = r.int32();
  const data = length === -1 ? Buffer.alloc(0) : r.bytes(length);
  if (r.remaining !== 0) throw new RangeError('trailing bytes after SASL initial response');
  return { mechanism, data };
}

export function encodePasswordMessage(password: string): Buffer {
  return new MessageWriter().cstring(password).finish(FrontendType.Password);
}

export function encodeSASLInitialResponse(mechanism: string, data: Buffer): Buffer {
  return new MessageWriter().cstring(mechanism).int32(data.length).bytes(data).finish(FrontendType.Password);
}

export function encodeSASLResponse(data: Buffer): Buffer {
  return new MessageWriter().bytes(data).finish(FrontendType.Password);
}

export function encodeTerminate(): Buffer {
  return new MessageWriter().finish(FrontendType.Terminate);
}

export function encodeQuery(sql: string): Buffer {
  return new MessageWriter().cstring(sql).finish(FrontendType.Query);
}
