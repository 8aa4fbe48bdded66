// A client that logged in to the database "ambassador": the admin console. Only users listed in
// admin.users get in (after the same client authentication as everyone); nothing is sent
// upstream. Messages are framed here and answered one at a time, in order, by the console the
// composition root supplies (admin/console.ts), so this module never imports admin/.

import { Buffer } from 'node:buffer';
import { randomInt } from 'node:crypto';
import type net from 'node:net';
import type { Logger } from 'pino';
import { AmbassadorError } from '../errors.ts';
import {
  encodeAuthenticationOk,
  encodeBackendKeyData,
  encodeErrorResponse,
  encodeParameterStatus,
  encodeReadyForQuery,
} from '../protocol/backend.ts';
import { ALL_TYPES, Framer } from '../protocol/framer.ts';
import { FrontendType } from '../protocol/frontend.ts';
import { errorResponseFor } from './wire-errors.ts';

/** The database name that opens the admin console instead of a server connection. */
export const ADMIN_DATABASE = 'ambassador';

/** Console commands are short; anything larger is refused as a protocol violation. */
const MAX_CONSOLE_MESSAGE = 1024 * 1024;

/** Answers one client message (see admin/console.ts): the bytes to send, or null for none yet. */
export interface ConsoleHandler {
  handle(type: number, payload: Buffer): Promise<Buffer | null>;
}

export interface ConsoleAccess {
  /** User names allowed in (admin.users). */
  users: ReadonlySet<string>;
  /** The ambassador's version, reported as part of server_version. */
  version: string;
  create(log: Logger): ConsoleHandler;
}

/**
 * Runs the console on `socket` for `user`, whose authentication succeeded (AuthenticationOk not
 * yet sent). `pending` holds client bytes that arrived with the last authentication message.
 */
export function startConsole(
  socket: net.Socket,
  user: string,
  access: ConsoleAccess | null,
  pending: readonly Buffer[],
  deps: { log: Logger; end: (reason: string) => void },
): void {
  if (access === null || !access.users.has(user)) {
    const err = new AmbassadorError('NOT_ADMIN', `user "${user}" may not use the admin console (database "${ADMIN_DATABASE}")`, {
      hint: access === null ? 'The console is off: list admin users in admin.users.' : 'List the user in admin.users.',
    });
    socket.write(errorResponseFor(err));
    deps.log.info({ user }, 'admin console login refused: not in admin.users');
    return deps.end('not an admin console user');
  }
  const console = access.create(deps.log.child({ component: 'console' }));
  socket.write(
    Buffer.concat([
      encodeAuthenticationOk(),
      encodeParameterStatus('server_version', `16 (pg-ambassador ${access.version} admin console)`),
      encodeParameterStatus('server_encoding', 'UTF8'),
      encodeParameterStatus('client_encoding', 'UTF8'),
      encodeParameterStatus('DateStyle', 'ISO, MDY'),
      encodeParameterStatus('integer_datetimes', 'on'),
      encodeParameterStatus('standard_conforming_strings', 'on'),
      encodeBackendKeyData(randomInt(1, 0x7fffffff), randomInt(0, 0x7fffffff)),
      encodeReadyForQuery('I'),
    ]),
  );
  const framer = new Framer(MAX_CONSOLE_MESSAGE, ALL_TYPES);
  // Answers go out in the order the messages came, one command at a time.
  let queue = Promise.resolve();
  let ended = false;
  const end = (reason: string): void => {
    if (ended) return;
    ended = true;
    deps.end(reason);
  };
  const onMessage = (type: number, payload: Buffer | null): boolean => {
    if (type === FrontendType.Terminate) {
      end('client sent Terminate');
      return false;
    }
    const copy = Buffer.from(payload!);
    queue = queue
      .then(() => (ended ? null : console.handle(type, copy)))
      .then((answer) => {
        if (answer !== null && !ended) socket.write(answer);
      })
      .catch((err: unknown) => {
        deps.log.error({ err: err instanceof Error ? err.message : String(err) }, 'admin console command failed');
        if (!ended) socket.write(Buffer.concat([errorResponseFor(err), encodeReadyForQuery('I')]));
      });
    return true;
  };
  const onData = (chunk: Buffer): void => {
    if (ended) return;
    try {
      framer.push(chunk, onMessage);
    } catch (err) {
      socket.write(encodeErrorResponse({ severity: 'FATAL', code: '08P01', message: err instanceof Error ? err.message : String(err) }));
      end('malformed message to the admin console');
    }
  };
  socket.on('data', onData);
  for (const chunk of pending) onData(chunk);
}
