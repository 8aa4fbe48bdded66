// Where one request goes, from the classifications of the statements it runs and the client's
// routing settings (PURE: no I/O). The host itself is chosen later (pool/host-choice.ts).
//
// Invariants:
// - A request is a read only when every statement it runs is; one write sends all of it to the
//   primary (the request is one implicit transaction on one server).
// - `ambassador.route = replica` (and target_session_attrs read-only / prefer-standby) only
//   overrides the conservative function verdicts, as the comment hint does: a statement that
//   certainly writes never goes to a replica. A statement's own `route=primary` hint wins over
//   every session setting.
// - A plain BEGIN counts as read-only only when the session's default_transaction_read_only is
//   on (as the server reported it); BEGIN READ ONLY is classified a read by the classifier.

import type { Classification } from './classifier.ts';

export type SessionRoute = 'auto' | 'primary' | 'replica';

export interface SessionRouting {
  route: SessionRoute;
  /** The server reported default_transaction_read_only = on for this session. */
  readOnlyDefault: boolean;
}

export interface RouteDecision {
  kind: 'read' | 'write';
  reason: string;
}

const OVERRIDABLE = /^(unknown|volatile)-function:/;

export function decideRoute(classifications: ReadonlyArray<Readonly<Classification>>, session: SessionRouting): RouteDecision {
  if (session.route === 'primary') return { kind: 'write', reason: 'session-route' };
  let reason = 'no-statement';
  for (const c of classifications) {
    if (c.route === 'read') {
      if (reason === 'no-statement') reason = c.reason;
    } else if (c.hint === 'primary') {
      return { kind: 'write', reason: c.reason };
    } else if (session.route === 'replica' && c.statements === 1 && OVERRIDABLE.test(c.reason)) {
      reason = 'session-route';
    } else if (session.readOnlyDefault && c.statements === 1 && c.transaction === 'begin') {
      reason = 'read-only-session';
    } else {
      return { kind: 'write', reason: c.reason };
    }
  }
  return { kind: 'read', reason };
}

/** The session route a client's startup parameter target_session_attrs asks for (libpq's values). */
export function routeFromTargetSessionAttrs(value: string | undefined): SessionRoute | 'invalid' {
  switch (value?.toLowerCase()) {
    case undefined:
    case 'any':
      return 'auto';
    case 'read-write':
    case 'primary':
      return 'primary';
    case 'read-only':
    case 'standby':
    case 'prefer-standby':
      return 'replica';
    default:
      return 'invalid';
  }
}

const SHOW_DIRECTIVE = /^\s*show\s+ambassador\.(route|min_lsn|retry)\s*;?\s*$/i;

export type ShownDirective = 'ambassador.route' | 'ambassador.min_lsn' | 'ambassador.retry';

/** `SHOW ambassador.route` / `.min_lsn` / `.retry`, answered by the ambassador itself. */
export function shownDirective(sql: string): ShownDirective | null {
  const match = SHOW_DIRECTIVE.exec(sql);
  if (match === null) return null;
  return `ambassador.${match[1]!.toLowerCase()}` as ShownDirective;
}
