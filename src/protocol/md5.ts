// PostgreSQL's MD5 password authentication (AuthenticationMD5Password), both sides. Pure.
//
// Stored form:   'md5' + md5hex(password + user)
// Wire response: 'md5' + md5hex(md5hex(password + user) + salt)   (salt: the 4 bytes the server sent)
// Strings are hashed as UTF-8. A password that already has the stored form ('md5' + 32 lowercase
// hex digits) is used as the hash itself, so an ambassador holding only hashes can still log in.

import { Buffer } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';

export const MD5_SALT_BYTES = 4;
const STORED_HASH = /^md5[0-9a-f]{32}$/;

function md5Hex(...parts: (string | Buffer)[]): string {
  const hash = createHash('md5');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
}

/** True for PostgreSQL's stored MD5 form: 'md5' followed by 32 lowercase hex digits. */
export function isMd5PasswordHash(text: string): boolean {
  return STORED_HASH.test(text);
}

/** PostgreSQL's stored MD5 password: 'md5' + md5hex(password + user). */
export function md5PasswordHash(user: string, password: string): string {
  return `md5${md5Hex(password, user)}`;
}

/**
 * The PasswordMessage a client sends for AuthenticationMD5Password. `passwordOrStoredHash` may be
 * the stored 'md5...' hash; then `user` is not needed and may be null.
 */
export function md5AuthResponse(user: string | null, passwordOrStoredHash: string, salt: Buffer): string {
  if (salt.length !== MD5_SALT_BYTES) {
    throw new RangeError(`MD5 salt must be ${MD5_SALT_BYTES} bytes, got ${salt.length}`);
  }
  let inner: string;
  if (isMd5PasswordHash(passwordOrStoredHash)) {
    inner = passwordOrStoredHash.slice(3);
  } else if (user === null) {
    throw new TypeError('md5AuthResponse needs the user name unless given a stored "md5..." hash');
  } else {
    inner = md5Hex(passwordOrStoredHash, user);
  }
  return `md5${md5Hex(inner, salt)}`;
}

/** Checks a client's MD5 response against the stored hash, in constant time. */
export function verifyMd5Response(storedHash: string, salt: Buffer, response: string): boolean {
  if (!isMd5PasswordHash(storedHash) || salt.length !== MD5_SALT_BYTES) return false;
  const expected = Buffer.from(md5AuthResponse(null, storedHash, salt), 'latin1');
  const actual = Buffer.from(response, 'latin1');
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}
