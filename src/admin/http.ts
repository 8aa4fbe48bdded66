// The admin HTTP endpoint (admin.host:admin.port, loopback by default). It only observes and
// triggers: it holds no state of its own and reaches the rest through the callbacks it is given.
//   GET  /metrics        Prometheus exposition
//   GET  /livez          200 while the process serves requests (the event loop turns)
//   GET  /readyz         200 when a primary is known and an upstream login worked within the last
//                        health interval; 503 with the reason otherwise (and while draining)
//   GET  /startupz       200 once startup finished (the client listener is bound)
//   GET  /config         the effective config, secrets redacted (JSON)
//   POST /reload         re-reads the config file, credentials and TLS files (as SIGHUP); JSON report
//   POST /quitquitquit   graceful shutdown, then exit 0 (a Kubernetes Job whose main container finished)
//
// Access: when admin.token is configured, every POST and GET /config need
// `Authorization: Bearer <admin.token>` (401 otherwise; compared in constant time). /config is
// redacted, but it still maps the deployment (hosts, user names, admin users), and whoever set a
// token does not expect it world-readable (PgBouncer's SHOW CONFIG needs an admin user too). The
// probes (/livez, /readyz, /startupz) and /metrics stay open: kubelets and Prometheus scrape them,
// and they carry no secret. Without a token everything is open, which is why admin.host defaults
// to loopback and a non-loopback one without a token is a startup warning. Browser pages are kept
// out token or not: POSTs that carry an Origin header are refused, and an endpoint bound to
// loopback answers only requests addressed to a loopback name (Host header), so a web page whose
// name was re-pointed at 127.0.0.1 (DNS rebinding) cannot read /config or /metrics.

import { timingSafeEqual, createHash } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import type { Logger } from 'pino';
import { isLoopbackHost } from '../startup-warnings.ts';

export interface AdminServerOptions {
  host: string;
  port: number;
  /** Bearer token the POST endpoints and GET /config require, read per request (a reload may change it); undefined: none. */
  token: () => string | undefined;
  reload: (reason: string) => Promise<unknown>;
  /** The exposition text and its content type. */
  metrics: () => Promise<{ contentType: string; body: string }>;
  /** Readiness and why; checking may log in upstream. */
  ready: () => Promise<{ ready: boolean; reason: string }>;
  /** Whether startup has finished. */
  started: () => boolean;
  /** The effective config with secrets redacted. */
  config: () => unknown;
  /** Starts a graceful shutdown (the process exits when it is done). */
  quit: (reason: string) => void;
  log: Logger;
}

export interface AdminServer {
  readonly address: net.AddressInfo;
  close(): Promise<void>;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> | void;

/** GET endpoints that need the token (when one is configured) as the POST ones do. */
const GUARDED_GETS: ReadonlySet<string> = new Set(['/config']);

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const routes = new Map<string, Handler>([
    ['GET /livez', (_req, res) => send(res, 200, 'ok\n')],
    [
      'GET /metrics',
      async (_req, res) => {
        const { contentType, body } = await options.metrics();
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
        res.end(body);
      },
    ],
    [
      'GET /readyz',
      async (_req, res) => {
        const { ready, reason } = await options.ready();
        send(res, ready ? 200 : 503, `${reason}\n`);
      },
    ],
    ['GET /startupz', (_req, res) => (options.started() ? send(res, 200, 'started\n') : send(res, 503, 'starting\n'))],
    ['GET /config', (_req, res) => sendJson(res, 200, options.config())],
    [
      'POST /quitquitquit',
      (_req, res) => {
        sendJson(res, 200, { shuttingDown: true });
        options.quit('POST /quitquitquit');
      },
    ],
    [
      'POST /reload',
      async (_req, res) => {
        const report = await options.reload('POST /reload');
        sendJson(res, 200, report);
      },
    ],
  ]);
  const loopbackOnly = isLoopbackHost(options.host);
  const server = http.createServer((req, res) => {
    if (loopbackOnly && !addressedToLoopback(req.headers.host)) {
      return sendJson(res, 421, { error: 'this admin endpoint listens on loopback: address it as 127.0.0.1, [::1] or localhost' });
    }
    void handle(req, res, routes, options).catch((err: unknown) => {
      options.log.error({ err: err instanceof Error ? err.message : String(err), path: req.url }, 'admin request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  // Keep-alive connections would hold close() open until they time out.
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`cannot listen for admin requests on ${options.host}:${options.port}: ${err.code ?? err.message}`);
  });
  const address = server.address() as net.AddressInfo;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, routes: Map<string, Handler>, options: AdminServerOptions): Promise<void> {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  const route = routes.get(`${req.method} ${path}`);
  if (!route) {
    const known = [...routes.keys()].filter((key) => key.endsWith(` ${path}`));
    if (known.length > 0) return sendJson(res, 405, { error: `use ${known.map((key) => key.split(' ')[0]).join(' or ')} for ${path}` });
    return sendJson(res, 404, { error: `no admin endpoint ${path}` });
  }
  // A web page open in a browser on this host can send a POST to loopback without asking first;
  // browsers mark such requests with Origin, which no operator's curl or probe sends.
  if (req.method === 'POST' && req.headers.origin !== undefined) {
    return sendJson(res, 403, { error: 'admin POST requests from a browser page (Origin header) are refused' });
  }
  const guarded = req.method === 'POST' || GUARDED_GETS.has(path);
  if (guarded && !authorized(req, options.token())) {
    res.setHeader('WWW-Authenticate', 'Bearer');
    return sendJson(res, 401, { error: 'this endpoint needs Authorization: Bearer <admin.token>' });
  }
  req.resume(); // no endpoint reads a body; drain it so the connection can be reused
  await route(req, res);
}

/** Whether a Host header names a loopback address (or is absent, as HTTP/1.0 allows). */
function addressedToLoopback(host: string | undefined): boolean {
  if (host === undefined || host === '') return true;
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '');
  return isLoopbackHost(name);
}

/**
 * Whether the request carries the token. Surrounding whitespace is ignored on both sides (a token
 * read from a file or Secret often ends in a newline); a token that is only whitespace admits
 * nobody rather than everybody.
 */
function authorized(req: http.IncomingMessage, token: string | undefined): boolean {
  if (token === undefined) return true;
  const expected = token.trim();
  const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  if (!match || expected === '') return false;
  // Compare digests so neither the length nor the contents leak through timing.
  const digest = (text: string): Buffer => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(match[1]!.trim()), digest(expected));
}

function send(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(`${JSON.stringify(body)}\n`);
}
