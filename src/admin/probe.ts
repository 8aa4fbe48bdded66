// The client side of the admin probes, for container health checks that have no HTTP client of
// their own (`pg-ambassador probe livez` in the Dockerfile's HEALTHCHECK): asks the running
// ambassador's admin server, found from the same config the server was started with.

import type { Config } from '../config/index.ts';

export const PROBE_ENDPOINTS = ['livez', 'readyz', 'startupz'] as const;
export type ProbeEndpoint = (typeof PROBE_ENDPOINTS)[number];

export interface ProbeResult {
  readonly ok: boolean;
  /** `200 /livez`, `503 /readyz: no primary`, or why no answer came. */
  readonly summary: string;
}

/** The address to reach a server bound to `host`: a wildcard bind is reached on loopback. */
export function probeHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export function probeUrl(config: Pick<Config, 'admin'>, endpoint: ProbeEndpoint): string {
  return `http://${probeHost(config.admin.host)}:${config.admin.port}/${endpoint}`;
}

/** GET /<endpoint> on the admin server; ok only for a 200 within `timeoutMs`. */
export async function probe(config: Pick<Config, 'admin'>, endpoint: ProbeEndpoint, timeoutMs: number): Promise<ProbeResult> {
  const url = probeUrl(config, endpoint);
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await response.text()).trim().slice(0, 500);
    return { ok: response.status === 200, summary: `${response.status} /${endpoint}${body ? `: ${body}` : ''}` };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    return { ok: false, summary: `no answer from ${url} (${cause})` };
  }
}
