/**
 * The worker's AWS credentials: one provider per process, shared by every AWS client (RDS, S3)
 * and by every IAM database token. It is the SDK's default chain (environment, profile, web
 * identity, container or instance role), which keeps what it resolved until shortly before it
 * expires. Shared, it resolves once; a chain per database connection (what an RDS Signer without
 * credentials builds) would ask the instance metadata service or STS at every connection, and be
 * throttled by them under load.
 */
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import type { SignerConfig } from '@aws-sdk/rds-signer';

export type AwsCredentialsProvider = NonNullable<SignerConfig['credentials']>;

let shared: AwsCredentialsProvider | undefined;

export function workerCredentials(): AwsCredentialsProvider {
  shared ??= fromNodeProviderChain();
  return shared;
}
