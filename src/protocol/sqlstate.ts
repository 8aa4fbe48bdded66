// SQLSTATE codes the ambassador itself emits or reacts to (PostgreSQL Appendix A).

export const SqlState = {
  SuccessfulCompletion: '00000',
  ConnectionException: '08000',
  SqlclientUnableToEstablishSqlconnection: '08001',
  ConnectionFailure: '08006',
  ProtocolViolation: '08P01',
  FeatureNotSupported: '0A000',
  InvalidAuthorizationSpecification: '28000',
  InvalidPassword: '28P01',
  ReadOnlySqlTransaction: '25006',
  TooManyConnections: '53300',
  ConfigurationLimitExceeded: '53400',
  QueryCanceled: '57014',
  AdminShutdown: '57P01',
  CannotConnectNow: '57P03',
  InternalError: 'XX000',
} as const;

/** The two-character class of a SQLSTATE, e.g. '08' for connection exceptions. */
export function sqlstateClass(code: string): string {
  return code.slice(0, 2);
}
