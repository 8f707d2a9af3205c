/**
 * The IAM actions a piece of TypeScript needs, read from its AWS SDK v3 calls: every
 * `new XxxCommand(` and `paginateXxx(` whose name is imported (under any local name) from
 * `@aws-sdk/client-rds` or `@aws-sdk/client-s3`, plus `rds-db:connect` for a file importing `@aws-sdk/rds-signer`.
 */

const CLIENTS = { '@aws-sdk/client-rds': 'rds', '@aws-sdk/client-s3': 's3' } as const;
type Service = (typeof CLIENTS)[keyof typeof CLIENTS];

/**
 * S3 operations whose IAM action has another name (the S3 documentation's table); every other
 * S3 operation is authorized by the action of its own name, as are all RDS operations.
 */
const S3_ACTIONS: Record<string, string[]> = {
  ListObjectsV2: ['s3:ListBucket'],
  ListObjects: ['s3:ListBucket'],
  HeadBucket: ['s3:ListBucket'],
  HeadObject: ['s3:GetObject'],
  ListObjectVersions: ['s3:ListBucketVersions'],
  DeleteObjects: ['s3:DeleteObject'],
  CopyObject: ['s3:GetObject', 's3:PutObject'],
  UploadPartCopy: ['s3:GetObject', 's3:PutObject'],
  CreateMultipartUpload: ['s3:PutObject'],
  UploadPart: ['s3:PutObject'],
  CompleteMultipartUpload: ['s3:PutObject'],
  ListMultipartUploads: ['s3:ListBucketMultipartUploads'],
  ListParts: ['s3:ListMultipartUploadParts'],
  GetObjectAttributes: ['s3:GetObject', 's3:GetObjectAttributes'],
};

/** The condition keys every KMS action on a key supports: the key resource's and the call's. */
const KMS_KEY_KEYS = [
  'aws:ResourceTag/${TagKey}',
  'kms:CallerAccount',
  'kms:KeyOrigin',
  'kms:KeySpec',
  'kms:KeyUsage',
  'kms:MultiRegion',
  'kms:MultiRegionKeyType',
  'kms:RequestAlias',
  'kms:ResourceAliases',
  'kms:ViaService',
];

/** The condition keys of a KMS cryptographic operation (Decrypt, GenerateDataKey). */
const KMS_CRYPTO_KEYS = [
  ...KMS_KEY_KEYS,
  'kms:EncryptionAlgorithm',
  'kms:EncryptionContext:${EncryptionContextKey}',
  'kms:EncryptionContextKeys',
];

/**
 * The condition keys an IAM statement may test for each action that the worker policy conditions:
 * the action's own keys and those of the resource types it acts on, as the Service Authorization
 * Reference lists them ("Actions, resources, and condition keys for AWS Key Management Service",
 * and "... for Amazon RDS"). A key an action does not support never matches: in an Allow the
 * statement silently allows nothing (or, with a negated operator, everything); in a Deny it
 * silently denies nothing. Global keys (`aws:*` other than the tag keys) apply to every action and
 * are not listed; an action missing here may only carry global keys.
 */
export const ACTION_CONDITION_KEYS: Record<string, readonly string[]> = {
  // kms:GrantIsForAWSResource exists only on the grant actions (CreateGrant, ListGrants, RevokeGrant).
  'kms:CreateGrant': [
    ...KMS_KEY_KEYS,
    'kms:GrantConstraintType',
    'kms:GranteePrincipal',
    'kms:GrantIsForAWSResource',
    'kms:GrantOperations',
    'kms:RetiringPrincipal',
  ],
  'kms:DescribeKey': KMS_KEY_KEYS,
  // The cryptographic operations share their keys.
  'kms:Decrypt': KMS_CRYPTO_KEYS,
  'kms:GenerateDataKey': KMS_CRYPTO_KEYS,
  // The resource-type keys of `db` and `snapshot`.
  'rds:DeleteDBInstance': ['aws:ResourceTag/${TagKey}', 'rds:db-tag/${TagKey}'],
  'rds:DeleteDBSnapshot': ['aws:ResourceTag/${TagKey}', 'rds:snapshot-tag/${TagKey}'],
};

/** Keys that belong to a resource or request, not to every action, although spelled `aws:`. */
const TAG_KEYS = /^aws:(ResourceTag\/|RequestTag\/|TagKeys$)/;

const escapeRegExp = (text: string) => text.replace(/[.*+?^$()|[\]\\/]/g, '\\$&');

/** A key of the table as a pattern: `${TagKey}` and the like stand for any text. */
const keyPattern = (key: string) =>
  new RegExp(
    `^${key
      .split(/\$\{[^}]+\}/)
      .map(escapeRegExp)
      .join('.+')}$`,
    'i',
  );

/** The keys of `keys` that `action` does not support (condition keys are case-insensitive). */
export function unsupportedConditionKeys(action: string, keys: string[]): string[] {
  const supported = (ACTION_CONDITION_KEYS[action] ?? []).map(keyPattern);
  const global = (key: string) => key.startsWith('aws:') && !TAG_KEYS.test(key);
  return keys.filter((key) => !global(key) && !supported.some((pattern) => pattern.test(key)));
}

/**
 * What AWS authorizes alongside an operation, for the way the provider calls it (the RDS and KMS
 * documentation): tags given at creation are authorized as rds:AddTagsToResource; an instance
 * created with ManageMasterUserPassword has its secret created as the caller; an export task is
 * handed the export role and a grant on the KMS key; an object written to the SSE-KMS export
 * bucket needs a data key from the bucket's KMS key, and one read from it needs that key to decrypt.
 */
const ALSO_AUTHORIZED: Record<string, string[]> = {
  'rds:CreateDBInstance': [
    'rds:AddTagsToResource',
    'secretsmanager:CreateSecret',
    'secretsmanager:TagResource',
  ],
  'rds:CreateDBSnapshot': ['rds:AddTagsToResource'],
  // A restore of an encrypted snapshot or backup makes RDS describe its KMS key and grant itself
  // its use, both as the caller.
  'rds:RestoreDBInstanceFromDBSnapshot': ['rds:AddTagsToResource', 'kms:CreateGrant', 'kms:DescribeKey'],
  'rds:RestoreDBInstanceToPointInTime': ['rds:AddTagsToResource', 'kms:CreateGrant', 'kms:DescribeKey'],
  // A real recovery's modification hands RDS the enhanced monitoring role.
  'rds:ModifyDBInstance': ['iam:PassRole'],
  'rds:StartExportTask': ['iam:PassRole', 'kms:CreateGrant', 'kms:DescribeKey'],
  's3:PutObject': ['kms:GenerateDataKey'],
  's3:GetObject': ['kms:Decrypt'],
};

export interface DerivedAction {
  action: string;
  /** The operation or import that needs it, e.g. `StartExportTaskCommand` or `@aws-sdk/rds-signer`. */
  because: string;
}

/**
 * Names imported from a module, local name to exported name:
 * `import { A, B as C, type D } from 'mod'` gives A -> A and C -> B.
 */
function importedNames(source: string, moduleName: string): Map<string, string> {
  const names = new Map<string, string>();
  const pattern = /import\s+(?:type\s+)?\{([^}]*)\}\s*from\s*['"]([^'"]+)['"]/g;
  for (const match of source.matchAll(pattern)) {
    if (match[2] !== moduleName) continue;
    for (const part of match[1]!.split(',')) {
      const spec = part.trim();
      if (spec === '' || spec.startsWith('type ')) continue;
      const [exported, local = exported] = spec.split(/\s+as\s+/).map((name) => name.trim());
      names.set(local!, exported!);
    }
  }
  return names;
}

const escape = (name: string) => name.replace(/\$/g, '\\$');

/** The operation behind `new Local(` (a command) or `local(` (a paginator), when the source calls it. */
function calls(source: string, local: string, exported: string): string | undefined {
  const command = /^(\w+)Command$/.exec(exported)?.[1];
  if (command && new RegExp(`\\bnew\\s+${escape(local)}\\s*\\(`).test(source)) return command;
  const paginated = /^paginate(\w+)$/.exec(exported)?.[1];
  if (paginated && new RegExp(`(?<![\\w.$])${escape(local)}\\s*\\(`).test(source)) return paginated;
  return undefined;
}

function actionsOf(service: Service, operation: string): string[] {
  if (service === 'rds') return [`rds:${operation}`];
  return S3_ACTIONS[operation] ?? [`s3:${operation}`];
}

/** The actions one source file needs. Throws when it uses an SDK style the scan cannot follow. */
export function deriveActions(source: string, fileName: string): DerivedAction[] {
  const derived: DerivedAction[] = [];
  for (const [moduleName, service] of Object.entries(CLIENTS) as [string, Service][]) {
    const imported = importedNames(source, moduleName);
    // The aggregated clients (`new RDS().describeDBInstances()`) hide the operation from this scan.
    for (const aggregated of ['RDS', 'S3']) {
      if (imported.has(aggregated)) {
        throw new Error(
          `${fileName} imports the aggregated ${aggregated} client from ${moduleName}: use ${aggregated}Client with \`new XxxCommand(\` so the IAM policy test can see each call`,
        );
      }
    }
    for (const [local, exported] of imported) {
      const operation = calls(source, local, exported);
      if (operation === undefined) continue;
      for (const action of actionsOf(service, operation)) {
        derived.push({ action, because: exported });
        for (const also of ALSO_AUTHORIZED[action] ?? []) derived.push({ action: also, because: exported });
      }
    }
  }
  if (/from\s*['"]@aws-sdk\/rds-signer['"]/.test(source)) {
    derived.push({ action: 'rds-db:connect', because: '@aws-sdk/rds-signer' });
  }
  return derived;
}

/** Does the file use any of the AWS clients the scan follows? */
export function usesAwsClients(source: string): boolean {
  return /from\s*['"]@aws-sdk\/(client-rds|client-s3|rds-signer)['"]/.test(source);
}
