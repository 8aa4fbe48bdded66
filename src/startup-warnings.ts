// Settings that work but leave a door open, logged once at start: a proxy that lets anyone who
// can reach it in without a password, an admin endpoint whose POSTs anyone on the network may send.

import type { Config } from './config/index.ts';

export interface StartupWarning {
  readonly fields: Record<string, unknown>;
  readonly message: string;
}

/** 127.0.0.0/8, ::1 and localhost: reachable only from this host (or pod). */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function startupWarnings(config: Config): StartupWarning[] {
  const warnings: StartupWarning[] = [];
  const trust = config.clientAuth.method === 'trust';
  if (trust && !isLoopbackHost(config.listen.host)) {
    warnings.push({
      fields: { listen: config.listen.host },
      message: 'clientAuth.method trust on a non-loopback listen.host: anyone who can reach this address logs in upstream without a password; listen on 127.0.0.1 (LISTEN_HOST) or set clientAuth',
    });
  }
  if (config.admin.token === undefined && !isLoopbackHost(config.admin.host)) {
    warnings.push({
      fields: { admin: config.admin.host },
      message: 'no admin.token on a non-loopback admin.host: anyone who can reach it may POST /reload and /quitquitquit; set admin.token (ADMIN_TOKEN)',
    });
  }
  if (trust && config.admin.users.length > 0) {
    warnings.push({
      fields: { users: config.admin.users },
      message: 'admin.users with clientAuth.method trust: anyone who can reach the listener and names one of these users gets the admin console',
    });
  }
  return warnings;
}
