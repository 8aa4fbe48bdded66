// Microsoft Entra ID (Azure AD) authentication for Azure Database for PostgreSQL: the password is
// an access token for the ossrdbms scope from DefaultAzureCredential (environment service
// principal, workload identity, managed identity, then developer logins such as the Azure CLI).
// One credential object serves every fetch. The SDK is loaded only when this provider is created.
// Errors name the source and the cause, never a token or a secret.

import type { AccessToken, DefaultAzureCredential as DefaultAzureCredentialClass } from '@azure/identity';
import { AmbassadorError } from '../errors.ts';
import { sdkMessage, type CredentialProvider, type Secret } from './provider.ts';

export interface AzureAdOptions {
  /** Client id of a user-assigned managed identity or of the workload identity's app registration. */
  clientId?: string;
  tenantId?: string;
  /** E.g. https://ossrdbms-aad.database.windows.net/.default */
  scope: string;
  refreshMarginMs: number;
}

const SOURCE = 'Azure AD';

export async function createAzureAdProvider(options: AzureAdOptions): Promise<CredentialProvider> {
  const { DefaultAzureCredential } = await import('@azure/identity');
  const { clientId, tenantId, scope } = options;
  let credential: DefaultAzureCredentialClass;
  try {
    credential = new DefaultAzureCredential({ managedIdentityClientId: clientId, workloadIdentityClientId: clientId, tenantId });
  } catch (err) {
    // E.g. an unknown AZURE_TOKEN_CREDENTIALS value.
    throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${SOURCE}: DefaultAzureCredential could not be set up: ${sdkMessage(err, 600)}`);
  }

  async function getToken(): Promise<AccessToken> {
    let token: AccessToken | null;
    try {
      token = await credential.getToken(scope);
    } catch (err) {
      throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${SOURCE}: DefaultAzureCredential got no token for ${scope}: ${sdkMessage(err, 600)}`);
    }
    if (!token?.token) throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${SOURCE}: DefaultAzureCredential returned no token for ${scope}`);
    return token;
  }

  return {
    kind: 'azure-ad',
    rotates: false,
    token: true,
    refreshMarginMs: options.refreshMarginMs,
    async fetch(): Promise<Secret> {
      let token = await getToken();
      // MSAL keeps tokens in a process-wide cache and hands one out until 5 minutes before it
      // expires. Past the token's refreshOn (half of a lifetime over 2 h) the call that notices
      // fetches a new token but still returns the old one; the next call returns the new one.
      // So when the token is already inside our refresh margin, ask once more.
      if (token.expiresOnTimestamp - Date.now() <= options.refreshMarginMs) {
        const again = await getToken().catch(() => token);
        if (again.expiresOnTimestamp > token.expiresOnTimestamp) token = again;
      }
      return { password: token.token, expiresAt: new Date(token.expiresOnTimestamp) };
    },
  };
}
