// Throwaway TLS material for local clusters, made with the openssl CLI (EC P-256, fast to create):
//   ca.crt/ca.key             the "right" CA: signs the server and client certificates
//   wrong-ca.crt/wrong-ca.key an unrelated CA, for "verification must fail" tests
//   server.crt/server.key     CN=localhost, SAN DNS:localhost + IP:127.0.0.1, serverAuth
//   client.crt/client.key     CN=<client user> (cert auth maps CN to the role), clientAuth
// Private keys are mode 0600; the whole directory is owned by the server's OS user so Postgres
// accepts its key file (it must be owned by the server user and not group/world readable).

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import { chownTree, type OsIdentity } from './os-user.ts';

const execFileAsync = promisify(execFile);

export interface ClusterCerts {
  dir: string;
  caCert: string;
  caKey: string;
  wrongCaCert: string;
  wrongCaKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

export interface GenerateCertsOptions {
  /** CN of the client certificate, i.e. the role it logs in as with `cert` auth. */
  clientUser: string;
  /** Owner of the files (the server's OS user); undefined keeps the current user. */
  owner?: OsIdentity;
  days?: number;
}

const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync('openssl', args, { cwd, timeout: 30_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${(error as Error).message}\n${stderr}`);
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function selfSignedCa(dir: string, name: string, cn: string, days: number): Promise<void> {
  await openssl(
    ['req', '-x509', ...EC_KEY, '-config', 'openssl.cnf', '-extensions', 'ca', '-sha256',
      '-days', String(days), '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.crt`],
    dir,
  );
}

async function signedLeaf(dir: string, name: string, cn: string, profile: 'server' | 'client', days: number): Promise<void> {
  await openssl(
    ['req', '-new', ...EC_KEY, '-config', 'openssl.cnf', '-subj', `/CN=${cn}`,
      '-keyout', `${name}.key`, '-out', `${name}.csr`],
    dir,
  );
  await openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key',
      '-set_serial', `0x${randomBytes(12).toString('hex')}`, '-sha256', '-days', String(days),
      '-extfile', 'openssl.cnf', '-extensions', profile, '-out', `${name}.crt`],
    dir,
  );
}

/** Creates `dir` and the CA, wrong-CA, server and client certificates in it. */
export async function generateCerts(dir: string, options: GenerateCertsOptions): Promise<ClusterCerts> {
  const days = options.days ?? 365;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(path.join(dir, 'openssl.cnf'), OPENSSL_CONFIG);

  await Promise.all([
    selfSignedCa(dir, 'ca', 'pg-ambassador test CA', days),
    selfSignedCa(dir, 'wrong-ca', 'pg-ambassador unrelated CA', days),
  ]);
  await Promise.all([
    signedLeaf(dir, 'server', 'localhost', 'server', days),
    signedLeaf(dir, 'client', options.clientUser, 'client', days),
  ]);

  const certs: ClusterCerts = {
    dir,
    caCert: path.join(dir, 'ca.crt'),
    caKey: path.join(dir, 'ca.key'),
    wrongCaCert: path.join(dir, 'wrong-ca.crt'),
    wrongCaKey: path.join(dir, 'wrong-ca.key'),
    serverCert: path.join(dir, 'server.crt'),
    serverKey: path.join(dir, 'server.key'),
    clientCert: path.join(dir, 'client.crt'),
    clientKey: path.join(dir, 'client.key'),
  };
  for (const key of [certs.caKey, certs.wrongCaKey, certs.serverKey, certs.clientKey]) {
    await chmod(key, 0o600);
  }
  for (const cert of [certs.caCert, certs.wrongCaCert, certs.serverCert, certs.clientCert]) {
    await chmod(cert, 0o644);
  }
  await chmod(dir, 0o755);
  await chownTree(dir, options.owner);
  return certs;
}
