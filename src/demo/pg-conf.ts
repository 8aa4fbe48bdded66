// Text of the configuration files of a local test cluster: postgresql.conf additions for the
// primary (fast, unsafe-on-crash test settings: fsync off), pg_hba.conf (order matters: first
// match wins), and the per-replica overrides appended to postgresql.auto.conf (which wins over
// postgresql.conf, so a replica copied from the primary only needs its differences there).

import type { ClusterCerts } from './certs.ts';
import type { Login } from './pg-server.ts';

/** A `key = 'value'` line; values already wrapped in single quotes are kept as written. */
export function confLine(key: string, value: string | number | boolean): string {
  if (typeof value !== 'string') return `${key} = ${String(value)}`;
  if (value.length >= 2 && value.startsWith("'") && value.endsWith("'")) return `${key} = ${value}`;
  return `${key} = '${value.replaceAll("'", "''")}'`;
}

export interface PrimaryConfInput {
  port: number;
  /** Unix socket directory, or '' for TCP only. */
  socketDir: string;
  certs: ClusterCerts;
  ssl: boolean;
  /** Settings over the defaults (later lines win in postgresql.conf), e.g. { max_connections: '900' }. */
  extra?: Record<string, string>;
}

export function primaryConf(input: PrimaryConfInput): string {
  const settings: Array<[string, string | number | boolean]> = [
    ['listen_addresses', '127.0.0.1'],
    ['port', input.port],
    ['unix_socket_directories', input.socketDir],
    ['max_connections', 300],
    ['shared_buffers', '32MB'],
    ['password_encryption', 'scram-sha-256'],
    ['wal_level', 'replica'],
    ['max_wal_senders', 10],
    ['max_replication_slots', 10],
    ['wal_keep_size', '256MB'],
    ['hot_standby', 'on'],
    ['hot_standby_feedback', 'on'],
    ['wal_receiver_status_interval', '1s'],
    ['wal_retrieve_retry_interval', '500ms'],
    ['fsync', 'off'],
    ['synchronous_commit', 'on'],
    ['full_page_writes', 'off'],
    ['logging_collector', 'off'],
    ['log_destination', 'stderr'],
    ['log_line_prefix', '%m [%p] %q%u@%d '],
    ['log_timezone', 'UTC'],
    ['timezone', 'UTC'],
  ];
  if (input.ssl) {
    settings.push(
      ['ssl', 'on'],
      ['ssl_cert_file', input.certs.serverCert],
      ['ssl_key_file', input.certs.serverKey],
      ['ssl_ca_file', input.certs.caCert],
    );
  }
  for (const [key, value] of Object.entries(input.extra ?? {})) settings.push([key, value]);
  return ['', '# --- pg-ambassador local cluster ---', ...settings.map(([k, v]) => confLine(k, v)), ''].join('\n');
}

export interface HbaInput {
  replicationUser: string;
  certUser: string;
  md5User: string;
  clearUser: string;
  ssl: boolean;
}

export function hbaConf(input: HbaInput): string {
  const lines = [
    '# TYPE  DATABASE     USER  ADDRESS  METHOD   (pg-ambassador local cluster; first match wins)',
    'local   all          all                    trust',
  ];
  if (input.ssl) lines.push(`hostssl all          ${input.certUser} 127.0.0.1/32 cert`);
  lines.push(
    `host    all          ${input.md5User} 127.0.0.1/32 md5`,
    `host    all          ${input.clearUser} 127.0.0.1/32 password`,
    `host    replication  ${input.replicationUser} 127.0.0.1/32 scram-sha-256`,
    'host    all          all   127.0.0.1/32 scram-sha-256',
    '',
  );
  return lines.join('\n');
}

export interface ReplicaConfInput {
  port: number;
  primaryPort: number;
  replication: Login;
  applicationName: string;
  extra?: Record<string, string>;
}

export function replicaConf(input: ReplicaConfInput): string {
  const conninfo = [
    'host=127.0.0.1',
    `port=${input.primaryPort}`,
    `user=${input.replication.user}`,
    `password=${input.replication.password}`,
    `application_name=${input.applicationName}`,
    'sslmode=prefer',
  ].join(' ');
  const lines = [
    '',
    `# --- pg-ambassador local cluster: ${input.applicationName} ---`,
    confLine('port', input.port),
    confLine('primary_conninfo', conninfo),
    confLine('hot_standby', 'on'),
    ...Object.entries(input.extra ?? {}).map(([key, value]) => confLine(key, value)),
    '',
  ];
  return lines.join('\n');
}
