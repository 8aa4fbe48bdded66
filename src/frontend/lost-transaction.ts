// What a client sees when the server running its request dies (transaction pooling). The client
// connection stays usable: its in-flight requests are answered with an ERROR (08006, or the
// server's own FATAL code such as 57P01, downgraded so drivers keep the connection), and a
// transaction block that was open is then shown as aborted, as a server shows a failed
// transaction: every statement refused with 25P02 until ROLLBACK (or COMMIT, which a server
// answers with ROLLBACK for a failed transaction) ends it. A COMMIT that comes before the client
// heard of the loss fails with the loss instead: answered ROLLBACK, drivers would take it as
// committed. Those answers are made here, with no server: the transaction's server is gone and
// no other holds it. PURE: no sockets.

import { Buffer } from 'node:buffer';
import {
  BIND_COMPLETE,
  CLOSE_COMPLETE,
  decodeErrorFields,
  encodeCommandComplete,
  encodeErrorResponse,
  encodeReadyForQuery,
  NO_DATA,
  NO_PARAMETERS,
  PARSE_COMPLETE,
  type TransactionStatus,
} from '../protocol/backend.ts';
import { FrontendType } from '../protocol/frontend.ts';
import { textsOf, type Request } from './request-builder.ts';

export interface LostAnswer {
  bytes: Buffer;
  /** The transaction status after the request. */
  status: TransactionStatus;
  /** The request ended without Sync after an error: what follows up to Sync is skipped. */
  skipToSync: boolean;
}

/** Statements that end a transaction block without starting another. */
const TRANSACTION_END = /^\s*(rollback|abort|commit|end)(\s+(work|transaction))?(\s+and\s+no\s+chain)?\s*;?\s*$/i;
/** Of those, the ones that ask for the work to be kept. */
const COMMITS = /^\s*(commit|end)\b/i;
const IN_FAILED_TRANSACTION = '25P02';
const CONNECTION_FAILURE = '08006';

const ROLLBACK_DONE = encodeCommandComplete('ROLLBACK');

/** Whether the payload of an ErrorResponse says the server is ending the session (FATAL, PANIC). */
export function endsSession(payload: Buffer): boolean {
  const fields = decodeErrorFields(payload);
  const severity = fields.get('V') ?? fields.get('S');
  return severity === 'FATAL' || severity === 'PANIC';
}

/**
 * The error in-flight requests get when their server connection is lost: the server's own FATAL
 * (code and message) when it sent one before closing, else 08006. Severity ERROR: the client
 * connection goes on.
 */
export function lostServerError(where: string, fatal: Buffer | null, inTransaction: boolean): Buffer {
  const fields = fatal === null ? null : decodeErrorFields(fatal);
  const code = fields?.get('C') ?? CONNECTION_FAILURE;
  const message = fields?.get('M') !== undefined ? `${fields.get('M')} (server ${where})` : `server connection to ${where} was lost`;
  return encodeErrorResponse({
    severity: 'ERROR',
    code,
    message,
    detail: inTransaction
      ? 'The transaction ran on that server and is lost: end it with ROLLBACK, then run it again.'
      : 'The statement may or may not have completed before the connection was lost.',
    hint: 'This client connection is still usable.',
  });
}

/**
 * Answers a request sent while the transaction block is lost: acknowledgements and ROLLBACK for
 * a request that only ends the transaction, otherwise `firstError` (the loss, when the client
 * has not heard of it yet) or 25P02, and the rest skipped up to Sync. A COMMIT (or END) the
 * client sends before it heard of the loss gets the loss: what it asked to keep is gone (a
 * ROLLBACK tag alone reads as success to drivers); the transaction is over all the same.
 */
export function answerInLostTransaction(request: Request, firstError: Buffer | null): LostAnswer {
  const texts = textsOf(request);
  if (texts !== null && texts.length > 0 && texts.every((text) => TRANSACTION_END.test(text))) {
    if (firstError !== null && COMMITS.test(texts[0]!)) return failed(request, firstError, 'I');
    return { bytes: Buffer.concat(request.items.map(endingAnswer)), status: 'I', skipToSync: false };
  }
  const error =
    firstError ??
    encodeErrorResponse({
      severity: 'ERROR',
      code: IN_FAILED_TRANSACTION,
      message: 'current transaction is aborted, commands ignored until end of transaction block',
      detail: 'Its server connection was lost.',
    });
  return failed(request, error, 'E');
}

/** `error` for the request, as a server answers: then ReadyForQuery, or (no Sync yet) the rest skipped up to Sync. */
function failed(request: Request, error: Buffer, status: TransactionStatus): LostAnswer {
  if (!request.completes) return { bytes: error, status, skipToSync: true };
  return { bytes: Buffer.concat([error, encodeReadyForQuery(status)]), status, skipToSync: false };
}

/** What a server answers to each message of a request that runs ROLLBACK (or COMMIT) in a failed transaction. */
function endingAnswer(item: Request['items'][number]): Buffer {
  switch (item.kind) {
    case 'parse':
      return PARSE_COMPLETE;
    case 'bind':
      return BIND_COMPLETE;
    case 'describe':
      return Buffer.concat([NO_PARAMETERS, NO_DATA]);
    case 'raw':
      switch (item.type) {
        case FrontendType.Parse:
          return PARSE_COMPLETE;
        case FrontendType.Describe:
          return item.entry?.kind === 'describe-statement' ? Buffer.concat([NO_PARAMETERS, NO_DATA]) : NO_DATA;
        case FrontendType.Execute:
          return ROLLBACK_DONE;
        case FrontendType.Close:
          return CLOSE_COMPLETE;
        case FrontendType.Query:
          return Buffer.concat([ROLLBACK_DONE, encodeReadyForQuery('I')]);
        case FrontendType.Sync:
          return encodeReadyForQuery('I');
        default:
          return Buffer.alloc(0);
      }
  }
}
