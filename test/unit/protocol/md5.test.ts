// MD5 password authentication: PostgreSQL's stored form and the client's salted response, checked
// against values computed independently here and literal vectors confirmed with PostgreSQL 15.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { isMd5PasswordHash, md5AuthResponse, md5PasswordHash, verifyMd5Response } from '../../../src/protocol/md5.ts';

const md5hex = (data: Buffer | string): string => createHash('md5').update(data).digest('hex');
const SALT = Buffer.from([0x01, 0x02, 0x03, 0x04]);

test('md5PasswordHash is md5 of password followed by user name', () => {
  for (const [user, password] of [['postgres', 'postgres'], ['alice', 'correct horse'], ['ü', 'pässword'], ['u', '']]) {
    assert.equal(md5PasswordHash(user!, password!), `md5${md5hex(Buffer.from(password! + user!, 'utf8'))}`);
  }
});

test('literal vectors: stored by PostgreSQL 15 with password_encryption = md5', () => {
  // Also `printf secretmd5user | md5sum`: 2aea419619857e8a27f0f7aa641db0c6.
  assert.equal(md5PasswordHash('md5user', 'secret'), 'md52aea419619857e8a27f0f7aa641db0c6');
  assert.equal(md5PasswordHash('md5u', 'md5pw'), 'md5abd9ad6b7b01ac4db370153e5cda71d7');
  // From PostgreSQL's regression tests: the empty password of regress_passwd_empty.
  assert.equal(md5PasswordHash('regress_passwd_empty', ''), 'md585939a5ce845f1a1b620742e3c659e0a');
});

test('md5AuthResponse salts the inner hash, from the password or from a stored hash', () => {
  const inner = md5hex('secretmd5user');
  const expected = `md5${md5hex(Buffer.concat([Buffer.from(inner), SALT]))}`;
  assert.equal(md5AuthResponse('md5user', 'secret', SALT), expected);
  assert.equal(md5AuthResponse(null, 'md52aea419619857e8a27f0f7aa641db0c6', SALT), expected);
  assert.equal(md5AuthResponse('someone-else', 'md52aea419619857e8a27f0f7aa641db0c6', SALT), expected);
  assert.equal(md5AuthResponse('md5user', 'secret', Buffer.from([0xff, 0, 0x80, 0x7f])), `md5${md5hex(Buffer.concat([Buffer.from(inner), Buffer.from([0xff, 0, 0x80, 0x7f])]))}`);
  assert.notEqual(md5AuthResponse('md5user', 'secret', Buffer.from([1, 2, 3, 5])), expected);
  assert.match(expected, /^md5[0-9a-f]{32}$/);
});

test('md5AuthResponse rejects misuse instead of computing something wrong', () => {
  assert.throws(() => md5AuthResponse(null, 'plain password', SALT), TypeError);
  assert.throws(() => md5AuthResponse(null, 'MD52AEA419619857E8A27F0F7AA641DB0C6', SALT), TypeError);
  assert.throws(() => md5AuthResponse('u', 'p', Buffer.alloc(3)), RangeError);
  assert.throws(() => md5AuthResponse('u', 'p', Buffer.alloc(5)), RangeError);
});

test('verifyMd5Response accepts exactly the right response', () => {
  const stored = md5PasswordHash('md5user', 'secret');
  const good = md5AuthResponse('md5user', 'secret', SALT);
  assert.equal(verifyMd5Response(stored, SALT, good), true);
  assert.equal(verifyMd5Response(stored, SALT, md5AuthResponse('md5user', 'Secret', SALT)), false);
  assert.equal(verifyMd5Response(stored, SALT, md5AuthResponse('other', 'secret', SALT)), false);
  assert.equal(verifyMd5Response(stored, Buffer.from([4, 3, 2, 1]), good), false);
  assert.equal(verifyMd5Response(stored, SALT, good.toUpperCase()), false);
  assert.equal(verifyMd5Response(stored, SALT, good.slice(0, -1)), false);
  assert.equal(verifyMd5Response(stored, SALT, `${good}0`), false);
  assert.equal(verifyMd5Response(stored, SALT, ''), false);
  assert.equal(verifyMd5Response(stored, SALT, `${good.slice(0, -1)}\u00e9`), false);
  assert.equal(verifyMd5Response('SCRAM-SHA-256$4096:...', SALT, good), false);
  assert.equal(verifyMd5Response(stored, Buffer.alloc(0), good), false);
});

test('isMd5PasswordHash recognises only the stored form', () => {
  assert.equal(isMd5PasswordHash('md52aea419619857e8a27f0f7aa641db0c6'), true);
  for (const text of ['md52aea419619857e8a27f0f7aa641db0c', 'md52aea419619857e8a27f0f7aa641db0c6f', 'md5012345678901234567890123456789zz', 'MD52aea419619857e8a27f0f7aa641db0c6', '2aea419619857e8a27f0f7aa641db0c6', '']) {
    assert.equal(isMd5PasswordHash(text), false, text);
  }
});
