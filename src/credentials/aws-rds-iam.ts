// AWS RDS IAM authentication: the password is a SigV4-presigned `connect` URL for one
// (host, port, user), signed locally with credentials from the AWS SDK's default chain
// (environment, SSO, shared files, web identity, ECS/EC2 metadata). A token is accepted for
// 15 minutes, and never after the signing session ends, so expiresAt is the sooner of the two.
// The SDK is loaded only when this provider is created. Errors name the source and the cause,
// never a token or a secret key.

import type { Signer as SignerClass } from '@aws-sdk/rds-signer';
import type { defaultProvider as DefaultProvider } from '@aws-sdk/credential-provider-node';
import { AmbassadorError } from '../errors.ts';
import { sdkMessage, type CredentialProvider, type LoginTarget, type Secret } from './provider.ts';

export interface AwsRdsIamOptions {
  /** AWS region of the database; else AWS_REGION, AWS_DEFAULT_REGION, or the RDS endpoint's name. */
  region?: string;
  /** Host, port and user the token is signed for, when they differ from the login's (a proxy, a tunnel). */
  host?: string;
  port?: number;
  user?: string;
  refreshMarginMs: number;
  /** Where AWS_REGION / AWS_DEFAULT_REGION are read (the SDK's credential chain reads process.env). */
  env?: NodeJS.ProcessEnv;
}

/** How long RDS accepts a token (the presigned URL's X-Amz-Expires). */
export const RDS_TOKEN_LIFETIME_MS = 15 * 60 * 1000;

type Credentials = Awaited<ReturnType<ReturnType<typeof DefaultProvider>>>;

export async function createAwsRdsIamProvider(options: AwsRdsIamOptions): Promise<CredentialProvider> {
  const [{ Signer }, { defaultProvider }] = await Promise.all([import('@aws-sdk/rds-signer'), import('@aws-sdk/credential-provider-node')]);
  // One chain per provider: it remembers which source worked and caches until near expiry.
  const chain = defaultProvider();
  const env = options.env ?? process.env;

  async function resolveCredentials(): Promise<Credentials> {
    let credentials: Credentials;
    try {
      credentials = await chain();
    } catch (err) {
      throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `AWS RDS IAM: the default AWS credential chain found no credentials: ${sdkMessage(err)}`);
    }
    // As the SDK's own Signer does: credentials ending within a token lifetime would cut the token
    // short, so ask the chain once for newer ones, and keep the old ones if that gives nothing better.
    if (credentials.expiration && credentials.expiration.getTime() - Date.now() < RDS_TOKEN_LIFETIME_MS) {
      const refreshed = await chain({ forceRefresh: true }).catch(() => undefined);
      if (refreshed && (!refreshed.expiration || refreshed.expiration > credentials.expiration)) credentials = refreshed;
    }
    return credentials;
  }

  return {
    kind: 'aws-rds-iam',
    rotates: false,
    token: true,
    refreshMarginMs: options.refreshMarginMs,
    loginUser: (user) => options.user ?? user,
    async fetch(login: LoginTarget): Promise<Secret> {
      const hostname = options.host ?? login.host;
      const port = options.port ?? login.port;
      const username = options.user ?? login.user;
      const region = options.region ?? (env.AWS_REGION || undefined) ?? (env.AWS_DEFAULT_REGION || undefined) ?? regionOfRdsHost(hostname);
      if (region === undefined) {
        throw new AmbassadorError(
          'CREDENTIALS_UNAVAILABLE',
          `AWS RDS IAM: no AWS region for ${hostname}: set upstream.credentials.region (or AWS_REGION); it is only inferred from RDS endpoint names like <name>.<id>.<region>.rds.amazonaws.com`,
        );
      }
      const credentials = await resolveCredentials();
      // X-Amz-Date has whole seconds: the 900 s count from the second the signing falls in.
      const signedAt = Math.floor(Date.now() / 1000) * 1000;
      let password: string;
      try {
        const signer: SignerClass = new Signer({ hostname, port, username, region, credentials });
        password = await signer.getAuthToken();
      } catch (err) {
        throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `AWS RDS IAM: could not sign a token for ${username}@${hostname}:${port}: ${sdkMessage(err)}`);
      }
      const lifetimeEnd = signedAt + RDS_TOKEN_LIFETIME_MS;
      const sessionEnd = credentials.expiration?.getTime() ?? Infinity;
      return { password, expiresAt: new Date(Math.min(lifetimeEnd, sessionEnd)) };
    },
  };
}

/** The region label of an RDS endpoint (instance, cluster, proxy), or undefined for other names. */
export function regionOfRdsHost(hostname: string): string | undefined {
  const match = /^[^.]+\.[^.]+\.([a-z]{2}(?:-[a-z]+)+-\d+)\.rds\.amazonaws\.com(?:\.cn)?\.?$/i.exec(hostname);
  return match?.[1]?.toLowerCase();
}
