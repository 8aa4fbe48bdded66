// The OS identity PostgreSQL servers run as. Postgres refuses to run as root, so when this process
// is root every server, initdb, pg_ctl and pg_basebackup runs as the `postgres` OS user (created
// if missing) and the files they use are chowned to it. As a normal user, everything runs as us.

import { execFile } from 'node:child_process';
import { chown, lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface OsIdentity {
  user: string;
  uid: number;
  gid: number;
}

export const SERVER_OS_USER = 'postgres';

async function idOf(user: string): Promise<OsIdentity | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', user]),
      execFileAsync('id', ['-g', user]),
    ]);
    return { user, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return undefined;
  }
}

/**
 * The identity to run servers as: `postgres` when we are root (creating the system user if
 * needed), otherwise undefined, meaning "as this process".
 */
export async function serverIdentity(log: (line: string) => void = () => {}): Promise<OsIdentity | undefined> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const existing = await idOf(SERVER_OS_USER);
  if (existing) return existing;
  log(`creating OS user ${SERVER_OS_USER} (postgres refuses to run as root)`);
  try {
    await execFileAsync('useradd', ['--system', '--no-create-home', SERVER_OS_USER]);
  } catch (error) {
    throw new Error(
      `running as root and the "${SERVER_OS_USER}" OS user is missing; useradd failed: ` +
        `${(error as Error).message}. Create the user or run as a non-root user.`,
    );
  }
  const created = await idOf(SERVER_OS_USER);
  if (!created) throw new Error(`useradd ${SERVER_OS_USER} succeeded but "id ${SERVER_OS_USER}" fails`);
  return created;
}

/** spawn()/execFile() options that run a child as `identity` (no-op when undefined). */
export function runAsOptions(identity: OsIdentity | undefined): { uid?: number; gid?: number } {
  return identity ? { uid: identity.uid, gid: identity.gid } : {};
}

/** chown a file or a whole tree to `identity` (no-op when undefined). Symlinks are not followed. */
export async function chownTree(target: string, identity: OsIdentity | undefined): Promise<void> {
  if (!identity) return;
  const stat = await lstat(target);
  if (stat.isSymbolicLink()) return;
  await chown(target, identity.uid, identity.gid);
  if (!stat.isDirectory()) return;
  for (const entry of await readdir(target)) {
    await chownTree(path.join(target, entry), identity);
  }
}
