// GCP Cloud SQL IAM database authentication: the password is an OAuth2 access token with the
// sqlservice.login scope, from Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
// the gcloud ADC file, or the metadata server on GCE/GKE/Cloud Run). The database user of a
// service account is its email without `.gserviceaccount.com`. The SDK is loaded only when this
// provider is created. Errors name the source and the cause, never a token or a key.

import type { GoogleAuth as GoogleAuthClass } from 'google-auth-library';
import { AmbassadorError } from '../errors.ts';
import { sdkMessage, type CredentialProvider, type Secret } from './provider.ts';

export interface GcpCloudSqlIamOptions {
  refreshMarginMs: number;
}

/** The scope Cloud SQL checks on a token used as a database password. */
export const SQLSERVICE_LOGIN_SCOPE = 'https://www.googleapis.com/auth/sqlservice.login';

const SOURCE = 'GCP Cloud SQL IAM';
const ADC_HINT = 'set GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, or run where the metadata server answers';

export async function createGcpCloudSqlIamProvider(options: GcpCloudSqlIamOptions): Promise<CredentialProvider> {
  const { GoogleAuth } = await import('google-auth-library');
  // The client caches its token until it is within `eagerRefreshThresholdMillis` of expiry. The
  // CredentialCache calls fetch only when it wants a new token (ahead of expiry, on reload, after a
  // rejected login), so every fetch is made to count as "expiring": it always asks the source.
  const auth: GoogleAuthClass = new GoogleAuth({
    scopes: [SQLSERVICE_LOGIN_SCOPE],
    clientOptions: { eagerRefreshThresholdMillis: Number.POSITIVE_INFINITY },
  });

  return {
    kind: 'gcp-cloudsql-iam',
    rotates: false,
    token: true,
    refreshMarginMs: options.refreshMarginMs,
    loginUser: cloudSqlIamUser,
    async fetch(): Promise<Secret> {
      let client: Awaited<ReturnType<GoogleAuthClass['getClient']>>;
      try {
        client = await auth.getClient();
      } catch (err) {
        throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${SOURCE}: no Application Default Credentials (${ADC_HINT}): ${sdkMessage(err)}`);
      }
      let token: string | null | undefined;
      try {
        ({ token } = await client.getAccessToken());
      } catch (err) {
        throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${SOURCE}: could not get an access token from Application Default Credentials: ${sdkMessage(err)}`);
      }
      if (!token) throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${SOURCE}: Application Default Credentials returned no access token`);
      const expiry = client.credentials.expiry_date;
      return { password: token, expiresAt: typeof expiry === 'number' && expiry > 0 ? new Date(expiry) : undefined };
    },
  };
}

/**
 * The database user an IAM principal logs in as: a service account email
 * `name@project.iam.gserviceaccount.com` becomes `name@project.iam`; user emails stay as they are.
 */
export function cloudSqlIamUser(user: string): string {
  return /^[^@]+@.+\.gserviceaccount\.com$/i.test(user) ? user.replace(/\.gserviceaccount\.com$/i, '') : user;
}
