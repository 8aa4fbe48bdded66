// Giving a server connection back to its pool in a state the next client can use: a server
// left inside a transaction is rolled back, one that may carry session state is reset with
// DISCARD ALL, and one with a response still on its way is closed rather than cleaned.

import type { BackendConnection } from '../backend/connection.ts';
import { encodeQuery } from '../protocol/frontend.ts';
import type { ServerPool } from './server-pool.ts';

export interface ReturnState {
  /** Nothing is in flight and the server stream is at a message boundary. */
  quiet: boolean;
  /** Reset session state (DISCARD ALL) before reuse. */
  reset: boolean;
  timeoutMs: number;
}

export function returnServer(pool: ServerPool, server: BackendConnection, state: ReturnState): void {
  if (!state.quiet || server.isClosed) return pool.release(server, 'broken');
  // A cancel on its way would stop the cleanup, and the connection would be dropped: it lands first.
  const cancelling = server.cancelling;
  if (cancelling !== null) {
    void cancelling.then(() => {
      try {
        returnServer(pool, server, state);
      } catch {
        server.close(true); // not a rejection nobody handles: the connection is given up instead
      }
    });
    return;
  }
  const cleanup: Buffer[] = [];
  if (server.transactionStatus !== 'I') cleanup.push(encodeQuery('ROLLBACK'));
  if (state.reset) cleanup.push(encodeQuery('DISCARD ALL'));
  if (cleanup.length === 0) return pool.release(server, 'reusable');
  server.exchange(cleanup, cleanup.length, state.timeoutMs).then(
    ({ error }) => {
      if (state.reset) {
        // DISCARD ALL dropped the server's prepared statements and settings.
        server.forgetStatements();
        server.stateKey = '';
      }
      pool.release(server, error ? 'broken' : 'reusable');
    },
    () => pool.release(server, 'broken'),
  );
}
