// The one place where ambassador errors become ErrorResponse messages for clients.

import { asAmbassadorError } from '../errors.ts';
import { encodeErrorResponse } from '../protocol/backend.ts';

/** An ErrorResponse for anything thrown; catalogue errors keep their SQLSTATE and hint. */
export function errorResponseFor(err: unknown): Buffer {
  const e = asAmbassadorError(err);
  return encodeErrorResponse({ severity: e.severity, code: e.sqlstate, message: e.message, detail: e.detail, hint: e.hint });
}
