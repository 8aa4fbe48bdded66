// One idle client connection over a raw TCP socket (node:net): connect, log in (idle-login.ts),
// then hold the socket open doing nothing until close(). Used by the idle-client processes of the
// memory bench (idle-clients.ts) and by its warm-up login; also the messages between those
// processes and memory.ts.

import net from 'node:net';

import { IdleLogin, type IdleCredentials } from './idle-login.ts';
import { encodeTerminate } from '../src/protocol/frontend.ts';

export interface IdleEndpoint extends IdleCredentials {
  host: string;
  port: number;
}

/** The environment variable carrying IdleClientsSettings (JSON) to an idle-clients.ts process. */
export const IDLE_CLIENTS_ENV = 'BENCH_IDLE_CLIENTS';

export interface IdleClientsSettings {
  endpoint: IdleEndpoint;
  count: number;
  /** Logins in flight at once. */
  concurrency: number;
  loginTimeoutMs: number;
}

/** What memory.ts and an idle-clients.ts process say to each other (see idle-clients.ts). */
export type ParentMessage = { type: 'go' } | { type: 'status' } | { type: 'close' };
export type ChildMessage =
  | { type: 'loaded' }
  | { type: 'connected'; connected: number; failed: number; errors: string[]; elapsedMs: number }
  | { type: 'status'; open: number }
  | { type: 'closed'; open: number };

export interface IdleConnection {
  /** False once the server closed the connection or sent an error after the login. */
  isOpen(): boolean;
  /** Sends Terminate and closes the socket. */
  close(): void;
}

/** Resolves once the client is logged in (ReadyForQuery); rejects with the reason otherwise. */
export function connectIdle(endpoint: IdleEndpoint, timeoutMs: number): Promise<IdleConnection> {
  return new Promise((resolve, reject) => {
    const login = new IdleLogin(endpoint);
    const socket = net.connect({ host: endpoint.host, port: endpoint.port });
    let open = false;
    let settled = false;
    const finish = (error: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        socket.destroy();
        reject(error);
        return;
      }
      open = true;
      resolve({
        isOpen: () => open,
        close: () => {
          if (!open) return;
          open = false;
          socket.end(encodeTerminate());
        },
      });
    };
    const timer = setTimeout(() => finish(new Error(`no ReadyForQuery within ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', () => socket.write(login.startup()));
    socket.on('data', (chunk: Buffer) => {
      for (const reply of login.receive(chunk)) socket.write(reply);
      if (login.state === 'ready') finish(null);
      else if (login.state === 'failed') {
        if (settled) open = false;
        finish(new Error(login.error ?? 'login failed'));
      }
    });
    socket.on('error', (error) => finish(error));
    socket.on('close', () => {
      open = false;
      finish(new Error('connection closed during login'));
    });
  });
}
