// Upstream credentials. A CredentialProvider yields the secret to log in upstream with; providers
// that rotate (files, commands, cloud IAM tokens) refresh ahead of expiry behind this interface,
// so connections always ask for the current value and never hold one.

import { readFile } from 'node:fs/promises';
import { AmbassadorError } from '../errors.ts';

export interface Secret {
  password: string;
  /** When the secret stops being valid, if it expires (IAM tokens). */
  expiresAt?: Date | undefined;
}

export interface CredentialProvider {
  /** Names the provider in logs and metrics; never includes the secret. */
  readonly kind: string;
  /** The current secret. */
  get(): Promise<Secret>;
  /** Drops any cached value so the next get() fetches anew (after the server answered 28P01). */
  invalidate(): void;
}

/** A password fixed in the config (possibly interpolated from the environment at load time). */
export class StaticPasswordProvider implements CredentialProvider {
  readonly kind = 'password';

  constructor(private readonly password: string) {}

  async get(): Promise<Secret> {
    return { password: this.password };
  }

  invalidate(): void {}
}

/** Reads an environment variable at each fetch, so a reload (SIGHUP) sees a changed value. */
export class EnvPasswordProvider implements CredentialProvider {
  readonly kind = 'env';

  constructor(
    private readonly variable: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  async get(): Promise<Secret> {
    const value = this.env[this.variable];
    if (value === undefined || value === '') {
      throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `environment variable ${this.variable} holding the upstream password is not set`);
    }
    return { password: value };
  }

  invalidate(): void {}
}

/** Reads a file (a mounted Kubernetes secret) at each fetch; trailing newlines are dropped. */
export class FilePasswordProvider implements CredentialProvider {
  readonly kind = 'file';

  constructor(private readonly path: string) {}

  async get(): Promise<Secret> {
    try {
      const text = await readFile(this.path, 'utf8');
      return { password: text.replace(/\r?\n$/, '') };
    } catch (err) {
      throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `could not read the upstream password file ${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }

  invalidate(): void {}
}
