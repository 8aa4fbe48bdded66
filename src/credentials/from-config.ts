// Maps `upstream.credentials` onto a CredentialProvider. The cloud providers' modules (and with
// them their SDKs) are imported only when configured, so a sidecar using a password file never
// loads the AWS, Google or Azure libraries.

import type { Config } from '../config/index.ts';
import { ExecPasswordProvider, EnvPasswordProvider, FilePasswordProvider, StaticPasswordProvider, type CredentialProvider } from './provider.ts';

export async function credentialProviderFor(config: Config, env: NodeJS.ProcessEnv): Promise<CredentialProvider | null> {
  const c = config.upstream.credentials;
  if (!c) return null;
  switch (c.type) {
    case 'password':
      return new StaticPasswordProvider(c.password);
    case 'env':
      return new EnvPasswordProvider(c.variable, env);
    case 'file':
      return new FilePasswordProvider(c.path);
    case 'exec':
      return new ExecPasswordProvider({ command: c.command, timeoutMs: c.timeout, env });
    case 'aws-rds-iam': {
      const { createAwsRdsIamProvider } = await import('./aws-rds-iam.ts');
      return createAwsRdsIamProvider({ region: c.region, host: c.host, port: c.port, user: c.user, refreshMarginMs: c.refreshMargin, env });
    }
    case 'gcp-cloudsql-iam': {
      const { createGcpCloudSqlIamProvider } = await import('./gcp-cloudsql-iam.ts');
      return createGcpCloudSqlIamProvider({ refreshMarginMs: c.refreshMargin });
    }
    case 'azure-ad': {
      const { createAzureAdProvider } = await import('./azure-ad.ts');
      return createAzureAdProvider({ clientId: c.clientId, tenantId: c.tenantId, scope: c.scope, refreshMarginMs: c.refreshMargin });
    }
  }
}
