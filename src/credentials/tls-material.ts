// TLS material that rotates without restarts: the upstream CA/client certificate/key and the
// listener's certificate/key, read from files that operators (or Kubernetes) replace in place.
// Invariants:
// - All files of one material are read and validated together (every certificate parses, the
//   key parses and matches its certificate, the secure context builds) before anything is
//   swapped; a swap replaces one reference, so a connect sees the old material or the new, whole.
// - A bad or half-written file keeps the last good material, says which file and why, and the
//   next change to the files is tried again. Key contents never reach a log line or an event.
// - At construction the files must be good: a problem is a ConfigError naming the file and key.

import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { UpstreamTlsMode, UpstreamTlsSettings } from '../backend/connector.ts';
import { ConfigError } from '../errors.ts';
import { FileWatch } from '../lib/file-watch.ts';

export type TlsScope = 'upstream' | 'listen';

export type TlsEvent =
  | { type: 'tls-reloaded'; scope: TlsScope; files: string[] }
  | { type: 'tls-reload-failed'; scope: TlsScope; files: string[]; error: string };

export interface TlsMaterialOptions {
  log: Logger;
  onEvent?: (event: TlsEvent) => void;
  /** Watch the files and reload on change (default true); reload() works either way. */
  watch?: boolean;
  /** FileWatch poll interval (ms; default 1000). */
  pollMs?: number;
}

type TlsVersion = 'TLSv1.2' | 'TLSv1.3';
type Role = 'ca' | 'cert' | 'key';

interface MaterialFile {
  role: Role;
  path: string;
  /** The config key that names the file, e.g. upstream.tls.ca. */
  keyPath: string;
}

/** One consistent reading of a material's files, validated. */
interface LoadedMaterial {
  pem: Partial<Record<Role, Buffer>>;
  secureContext: tls.SecureContext;
  certificates: Array<{ file: MaterialFile; cert: X509Certificate }>;
}

/** A file of the material is unusable: names the file, the config key and the reason. */
class MaterialProblem extends Error {
  constructor(
    readonly file: MaterialFile,
    readonly reason: string,
  ) {
    super(`${file.keyPath} (${file.path}): ${reason}`);
  }
}

const LOGGED_CERTS_PER_FILE = 5;
/** Re-reads when the files changed while being read (a swap between reading the cert and the key). */
const READ_ATTEMPTS = 3;

/** The upstream side: what `TcpConnector` gets for each new server connection. */
export class UpstreamTlsMaterial {
  private settings: UpstreamTlsSettings;
  private readonly material: RotatingMaterial;

  constructor(
    config: { mode: UpstreamTlsMode; ca?: string; cert?: string; key?: string; serverName?: string; minVersion: TlsVersion },
    options: TlsMaterialOptions,
  ) {
    const { mode, serverName, minVersion } = config;
    const build = (loaded: LoadedMaterial): UpstreamTlsSettings =>
      Object.freeze({ mode, serverName, minVersion, ...loaded.pem, secureContext: loaded.secureContext });
    const files = materialFiles('upstream.tls', { ca: config.ca, cert: config.cert, key: config.key });
    this.material = new RotatingMaterial('upstream', files, minVersion, options, (loaded) => (this.settings = build(loaded)));
    this.settings = build(this.material.loaded);
  }

  /** Frozen; a new object after each swap, the same object otherwise. */
  current(): UpstreamTlsSettings {
    return this.settings;
  }

  /** Re-reads the files now (SIGHUP, POST /reload); true when the material changed and was swapped. */
  reload(reason: string): boolean {
    return this.material.reload(reason);
  }

  close(): void {
    this.material.close();
  }
}

/** The listener's certificate: the context each client TLS handshake uses. */
export class ListenerTlsMaterial {
  private context: tls.SecureContext | null = null;
  private readonly material: RotatingMaterial | null = null;

  constructor(config: { cert?: string; key?: string; minVersion: TlsVersion }, options: TlsMaterialOptions) {
    if (!config.cert || !config.key) return;
    const files = materialFiles('listen.tls', { cert: config.cert, key: config.key });
    this.material = new RotatingMaterial('listen', files, config.minVersion, options, (loaded) => (this.context = loaded.secureContext));
    this.context = this.material.loaded.secureContext;
  }

  /** null when no listener certificate is configured. */
  current(): tls.SecureContext | null {
    return this.context;
  }

  reload(reason: string): boolean {
    return this.material?.reload(reason) ?? false;
  }

  close(): void {
    this.material?.close();
  }
}

function materialFiles(prefix: string, paths: Partial<Record<Role, string | undefined>>): MaterialFile[] {
  const roles: Role[] = ['ca', 'cert', 'key'];
  return roles.flatMap((role) => (paths[role] ? [{ role, path: paths[role], keyPath: `${prefix}.${role}` }] : []));
}

/** Watching, reloading, logging and the swap, shared by both sides. */
class RotatingMaterial {
  loaded: LoadedMaterial;
  private readonly watch: FileWatch | null;
  private readonly log: Logger;

  constructor(
    private readonly scope: TlsScope,
    private readonly files: MaterialFile[],
    private readonly minVersion: TlsVersion,
    private readonly options: TlsMaterialOptions,
    private readonly onSwap: (loaded: LoadedMaterial) => void,
  ) {
    this.log = options.log.child({ scope });
    // The watch first: a change between its baseline and our read is then reported, not missed.
    const paths = files.map((file) => file.path);
    this.watch = options.watch === false || paths.length === 0
      ? null
      : new FileWatch(paths, (changed) => this.reload('file-change', changed), options.pollMs === undefined ? {} : { pollMs: options.pollMs });
    try {
      this.loaded = loadSettled(files, minVersion);
    } catch (err) {
      this.watch?.close();
      if (err instanceof MaterialProblem) throw new ConfigError(`${err.file.path}: ${err.reason}`, { keyPath: err.file.keyPath });
      throw err;
    }
    if (files.length > 0) this.log.info({ certificates: describeAll(this.loaded) }, 'TLS material loaded');
    this.warnValidity(this.loaded);
  }

  reload(reason: string, changed: string[] = this.files.map((file) => file.path)): boolean {
    let next: LoadedMaterial;
    try {
      next = loadSettled(this.files, this.minVersion);
    } catch (err) {
      const problem = err instanceof MaterialProblem ? err : null;
      const error = problem ? problem.message : `unexpected error: ${(err as Error).message}`;
      const files = problem ? [problem.file.path] : changed;
      this.log.warn({ reason, changed, file: problem?.file.path, keyPath: problem?.file.keyPath, error }, 'TLS material not reloaded; keeping the current one');
      this.emit({ type: 'tls-reload-failed', scope: this.scope, files, error });
      return false;
    }
    const differing = this.files.filter((file) => !next.pem[file.role]!.equals(this.loaded.pem[file.role]!)).map((file) => file.path);
    if (differing.length === 0) {
      this.log.debug({ reason, changed }, 'TLS material unchanged');
      return false;
    }
    this.loaded = next;
    this.onSwap(next);
    this.log.info({ reason, files: differing, certificates: describeAll(next) }, 'TLS material reloaded');
    this.warnValidity(next);
    this.emit({ type: 'tls-reloaded', scope: this.scope, files: differing });
    return true;
  }

  close(): void {
    this.watch?.close();
  }

  private warnValidity(loaded: LoadedMaterial, now = Date.now()): void {
    for (const { file, cert } of loaded.certificates) {
      const state = Date.parse(cert.validTo) < now ? 'expired' : Date.parse(cert.validFrom) > now ? 'not yet valid' : null;
      if (state) this.log.warn({ ...describe(file, cert), state }, `TLS certificate ${state}`);
    }
  }

  private emit(event: TlsEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch (err) {
      // The handler is someone else's; a throw from it must not kill the watch's timer.
      this.log.error({ err, event: event.type }, 'TLS event handler failed');
    }
  }
}

/** Reads and validates; when validation fails and the files changed meanwhile, tries again. */
function loadSettled(files: MaterialFile[], minVersion: TlsVersion): LoadedMaterial {
  for (let attempt = 1; ; attempt++) {
    const pem = readAll(files);
    try {
      return validate(files, pem, minVersion);
    } catch (err) {
      const unchanged = files.every((file) => {
        try {
          return readFileSync(file.path).equals(pem[file.role]!);
        } catch {
          return false;
        }
      });
      if (attempt >= READ_ATTEMPTS || unchanged) throw err;
    }
  }
}

function readAll(files: MaterialFile[]): Partial<Record<Role, Buffer>> {
  const pem: Partial<Record<Role, Buffer>> = {};
  for (const file of files) {
    try {
      pem[file.role] = readFileSync(file.path);
    } catch (err) {
      throw new MaterialProblem(file, `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return pem;
}

function validate(files: MaterialFile[], pem: Partial<Record<Role, Buffer>>, minVersion: TlsVersion): LoadedMaterial {
  const certificates: LoadedMaterial['certificates'] = [];
  const leafOf = new Map<Role, X509Certificate>();
  for (const file of files) {
    if (file.role === 'key') continue;
    const parsed = parseCertificates(file, pem[file.role]!);
    leafOf.set(file.role, parsed[0]!);
    for (const cert of parsed) certificates.push({ file, cert });
  }
  const keyFile = files.find((file) => file.role === 'key');
  const certFile = files.find((file) => file.role === 'cert');
  if (keyFile) checkKey(keyFile, pem.key!, certFile, leafOf.get('cert'));
  let secureContext: tls.SecureContext;
  try {
    secureContext = tls.createSecureContext({ ca: pem.ca, cert: pem.cert, key: pem.key, minVersion });
  } catch (err) {
    throw new MaterialProblem(keyFile ?? certFile ?? files[0]!, `the TLS library refuses the material: ${opensslReason(err)}`);
  }
  return { pem, secureContext, certificates };
}

/** Every PEM certificate of a file (a chain or a CA bundle); at least one, none cut short. */
function parseCertificates(file: MaterialFile, contents: Buffer): X509Certificate[] {
  const text = contents.toString('latin1');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  const begins = text.split('-----BEGIN CERTIFICATE-----').length - 1;
  if (blocks.length === 0) {
    throw new MaterialProblem(file, begins > 0 ? 'the certificate is cut short (no END line); still being written?' : 'no PEM certificate in the file');
  }
  if (begins !== blocks.length) throw new MaterialProblem(file, `certificate ${blocks.length + 1} is cut short (no END line); still being written?`);
  return blocks.map((block, index) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new MaterialProblem(file, `certificate ${index + 1} does not parse: ${opensslReason(err)}`);
    }
  });
}

function checkKey(keyFile: MaterialFile, contents: Buffer, certFile: MaterialFile | undefined, leaf: X509Certificate | undefined): void {
  let key: KeyObject;
  try {
    key = createPrivateKey(contents);
  } catch (err) {
    // OpenSSL's reason (e.g. "DECODER routines::unsupported") never quotes the input.
    throw new MaterialProblem(keyFile, `not a usable unencrypted PEM private key: ${opensslReason(err)}`);
  }
  if (leaf && certFile && !leaf.checkPrivateKey(key)) {
    throw new MaterialProblem(keyFile, `the key does not match the certificate in ${certFile.path} (${certFile.keyPath})`);
  }
}

function opensslReason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function describe(file: MaterialFile, cert: X509Certificate): Record<string, string> {
  return {
    keyPath: file.keyPath,
    file: file.path,
    subject: cert.subject.replaceAll('\n', ', '),
    issuer: cert.issuer.replaceAll('\n', ', '),
    serialNumber: cert.serialNumber,
    notBefore: cert.validFrom,
    notAfter: cert.validTo,
  };
}

/** Each certificate, but at most a few per file (system CA bundles hold hundreds). */
function describeAll(loaded: LoadedMaterial): Array<Record<string, string>> {
  const perFile = new Map<MaterialFile, X509Certificate[]>();
  for (const { file, cert } of loaded.certificates) perFile.set(file, [...(perFile.get(file) ?? []), cert]);
  return [...perFile].flatMap(([file, certs]) => [
    ...certs.slice(0, LOGGED_CERTS_PER_FILE).map((cert) => describe(file, cert)),
    ...(certs.length > LOGGED_CERTS_PER_FILE ? [{ keyPath: file.keyPath, more: `${certs.length - LOGGED_CERTS_PER_FILE} more certificates` }] : []),
  ]);
}
