// Settings that work but leave a door open, logged once at start: a proxy that lets anyone who
// can reach it in without a password, an admin endpoint whose POSTs (and /config) anyone on the
// network may use, the admin console handed out without a password.

import type { Config } from './config/index.ts';

export interface StartupWarning {
  readonly fields: Record<string, unknown>;
  readonly message: string;
}

/** 127.0.0.0/8 (also IPv4-mapped, ::ffff:127.x.y.z), ::1 and localhost: reachable only from this host (or pod). */
export function isLoopbackHost(host: string): boolean {
  const address = host.toLowerCase();
  return address === 'localhost' || address === '::1' || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(address);
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
      message: 'no admin.token on a non-loopback admin.host: anyone who can reach it may POST /reload and /quitquitquit and read /config; set admin.token (ADMIN_TOKEN)',
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
