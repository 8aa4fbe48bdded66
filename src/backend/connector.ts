// Opening sockets to upstream servers: TCP with a deadline, then the SSLRequest negotiation and
// TLS upgrade the configured mode asks for. Everything that touches the network on the way to a
// server goes through the Connector interface so tests can swap it for a fake or a fault proxy.

import net from 'node:net';
import tls from 'node:tls';
import { AmbassadorError } from '../errors.ts';
import { encodeSslRequest } from '../protocol/startup.ts';

export type UpstreamTlsMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface UpstreamTlsSettings {
  mode: UpstreamTlsMode;
  /** PEM contents, already read from disk (rotation swaps the whole object). */
  ca?: string | Buffer | undefined;
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  serverName?: string | undefined;
  minVersion?: tls.SecureVersion | undefined;
  /**
   * ca/cert/key/minVersion parsed once (credentials/tls-material.ts), so a connect does not
   * re-parse PEM; when present it wins over those four fields.
   */
  secureContext?: tls.SecureContext | undefined;
}

export interface UpstreamTarget {
  host: string;
  port: number;
}

export interface Connector {
  /** A connected socket, TLS-wrapped when negotiated; `tls` tells which. */
  connect(target: UpstreamTarget, settings: UpstreamTlsSettings, timeoutMs: number): Promise<ConnectedSocket>;
}

export interface ConnectedSocket {
  socket: net.Socket;
  /** The TLS socket when the connection is encrypted (same object as `socket`). */
  tls: tls.TLSSocket | null;
}

/** The real network. */
export class TcpConnector implements Connector {
  async connect(target: UpstreamTarget, settings: UpstreamTlsSettings, timeoutMs: number): Promise<ConnectedSocket> {
    const deadline = Date.now() + timeoutMs;
    const raw = await openTcp(target, timeoutMs);
    try {
      if (settings.mode === 'disable') return { socket: raw, tls: null };
      const answer = await requestTls(raw, Math.max(1, deadline - Date.now()), target);
      if (answer === 'N') {
        if (settings.mode === 'prefer') return { socket: raw, tls: null };
        throw new AmbassadorError('UPSTREAM_TLS_FAILED', `server ${describe(target)} does not support TLS, but upstream.tls.mode is ${settings.mode}`, {
          hint: 'Enable ssl on the server, or set upstream.tls.mode to prefer or disable.',
        });
      }
      const secure = await startTls(raw, target, settings, Math.max(1, deadline - Date.now()));
      return { socket: secure, tls: secure };
    } catch (err) {
      raw.destroy();
      throw err;
    }
  }
}

function describe(target: UpstreamTarget): string {
  return target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}

function openTcp(target: UpstreamTarget, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    // A host starting with '/' is a Unix socket directory, as in libpq.
    const socket = target.host.startsWith('/')
      ? net.connect({ path: `${target.host}/.s.PGSQL.${target.port}` })
      : net.connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new AmbassadorError('UPSTREAM_CONNECT_TIMEOUT', `connecting to ${describe(target)} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      if (!target.host.startsWith('/')) {
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 30_000);
      }
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new AmbassadorError('UPSTREAM_CONNECT_FAILED', `could not connect to ${describe(target)}: ${err.code ?? err.message}`, { cause: err }));
    });
  });
}

/** Sends SSLRequest and reads the one-byte answer; any byte after it is a protocol violation. */
function requestTls(socket: net.Socket, timeoutMs: number, target: UpstreamTarget): Promise<'S' | 'N'> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const fail = (err: AmbassadorError): void => {
      cleanup();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      // Paused so no byte flows unheard until the next reader (TLS or the login) takes over;
      // that reader resumes the socket.
      socket.pause();
      const answer = String.fromCharCode(chunk[0]!);
      if (chunk.length > 1) {
        // Bytes after the answer arrived before TLS was set up: someone is injecting plaintext.
        return fail(new AmbassadorError('UPSTREAM_PROTOCOL', `server ${describe(target)} sent unencrypted data after its TLS answer`));
      }
      if (answer !== 'S' && answer !== 'N') {
        return fail(new AmbassadorError('UPSTREAM_PROTOCOL', `server ${describe(target)} answered SSLRequest with byte 0x${chunk[0]!.toString(16)}`));
      }
      cleanup();
      resolve(answer);
    };
    const onError = (err: Error): void => fail(new AmbassadorError('UPSTREAM_CONNECT_FAILED', `connection to ${describe(target)} failed during TLS negotiation: ${err.message}`));
    const onClose = (): void => fail(new AmbassadorError('UPSTREAM_CONNECT_FAILED', `server ${describe(target)} closed the connection during TLS negotiation`));
    const timer = setTimeout(
      () => fail(new AmbassadorError('UPSTREAM_CONNECT_TIMEOUT', `server ${describe(target)} did not answer SSLRequest within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.write(encodeSslRequest());
  });
}

function startTls(raw: net.Socket, target: UpstreamTarget, settings: UpstreamTlsSettings, timeoutMs: number): Promise<tls.TLSSocket> {
  const verify = settings.mode === 'verify-ca' || settings.mode === 'verify-full';
  const name = settings.serverName ?? target.host;
  const options: tls.ConnectionOptions = {
    socket: raw,
    rejectUnauthorized: verify,
    ...(settings.secureContext
      ? { secureContext: settings.secureContext }
      : {
          minVersion: settings.minVersion ?? 'TLSv1.2',
          ...(settings.ca ? { ca: settings.ca } : {}),
          ...(settings.cert ? { cert: settings.cert } : {}),
          ...(settings.key ? { key: settings.key } : {}),
        }),
    // SNI must not carry an IP address.
    ...(net.isIP(name) ? {} : { servername: name }),
    checkServerIdentity: settings.mode === 'verify-full' ? (_host, cert) => tls.checkServerIdentity(name, cert) : () => undefined,
  };
  // Errors of the wrapped socket surface on the TLS socket; this keeps them from going unheard.
  raw.on('error', () => {});
  return new Promise((resolve, reject) => {
    const secure = tls.connect(options);
    const timer = setTimeout(() => {
      secure.destroy();
      reject(new AmbassadorError('UPSTREAM_CONNECT_TIMEOUT', `TLS handshake with ${describe(target)} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      secure.removeAllListeners('error');
      secure.setNoDelay(true);
      resolve(secure);
    });
    secure.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      secure.destroy();
      reject(
        new AmbassadorError('UPSTREAM_TLS_FAILED', `TLS with ${describe(target)} failed (${settings.mode}): ${err.message}`, {
          cause: err,
          hint: verify ? 'Check upstream.tls.ca (the CA that signed the server certificate) and upstream.tls.serverName.' : undefined,
        }),
      );
    });
  });
}
