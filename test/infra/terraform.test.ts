/**
 * The runbook's database settings, asserted on the Terraform itself (parsed, not planned: no AWS
 * account or terraform binary is needed). Values are resolved the way the production root sets
 * them: the root's module argument, else the module variable's default.
 */
import assert from 'node:assert/strict';
import path from 'node:path';

import { projectRoot } from '../../activities/config-types';
import {
  attr,
  blocks,
  find,
  parseTerraformDir,
  text,
  variableDefault,
  type HclBody,
  type TerraformDir,
} from '../helpers/terraform';

const moduleDir = path.join(projectRoot, 'infra', 'terraform', 'modules', 'pgvector-rds');
const productionDir = path.join(projectRoot, 'infra', 'terraform', 'production');

describe('Terraform: the runbook settings of the Multi-AZ pgvector RDS cluster', () => {
  let mod: TerraformDir;
  let prod: TerraformDir;
  let moduleCall: HclBody;

  before(async () => {
    [mod, prod] = await Promise.all([parseTerraformDir(moduleDir), parseTerraformDir(productionDir)]);
    moduleCall = find(prod.modules, '', 'database').body;
  });

  /** The value production gets for a module attribute written as "${var.x}" or a literal. */
  function effective(value: unknown): unknown {
    const variable = /^\$\{var\.(\w+)\}$/.exec(String(value))?.[1];
    if (variable === undefined) return value;
    if (variable in moduleCall) return fromRoot(attr(moduleCall, variable));
    return variableDefault(mod, variable);
  }

  function fromRoot(value: unknown): unknown {
    const variable = /^\$\{var\.(\w+)\}$/.exec(String(value))?.[1];
    return variable === undefined ? value : variableDefault(prod, variable);
  }

  function setting(resourceType: string, name: string, key: string): unknown {
    return effective(attr(find(mod.resources, resourceType, name).body, key));
  }

  const primary = (key: string) => setting('aws_db_instance', 'primary', key);
  const replica = (key: string) => setting('aws_db_instance', 'replica', key);

  it('the primary is PostgreSQL 15 on db.r5.large by default, Multi-AZ, private, on the runbook port', () => {
    assert.equal(primary('engine'), 'postgres');
    assert.match(String(primary('engine_version')), /^15(\.\d+)?$/);
    assert.equal(primary('instance_class'), 'db.r5.large');
    assert.equal(primary('multi_az'), true);
    assert.equal(primary('publicly_accessible'), false);
    assert.equal(primary('port'), 5432);
    assert.equal(primary('db_name'), 'mcp_db');
    assert.equal(primary('auto_minor_version_upgrade'), true);
  });

  it('storage is gp3, 100 GB growing automatically up to 1000 GB, encrypted with the customer KMS key', () => {
    assert.equal(primary('storage_type'), 'gp3');
    assert.equal(primary('allocated_storage'), 100);
    assert.equal(primary('max_allocated_storage'), 1000);
    assert.equal(primary('storage_encrypted'), true);
    assert.equal(primary('kms_key_id'), '${aws_kms_key.rds.arn}');
    assert.equal(attr(find(mod.resources, 'aws_kms_key', 'rds').body, 'enable_key_rotation'), true);
  });

  it('logins use IAM authentication; the master password is managed by RDS in Secrets Manager, never in variables', () => {
    assert.equal(primary('iam_database_authentication_enabled'), true);
    assert.equal(replica('iam_database_authentication_enabled'), true);
    assert.equal(primary('manage_master_user_password'), true);
    assert.equal(primary('master_user_secret_kms_key_id'), '${aws_kms_key.rds.arn}');
    for (const instance of ['primary', 'replica']) {
      const body = find(mod.resources, 'aws_db_instance', instance).body;
      assert.ok(!('password' in body), `aws_db_instance.${instance} sets a password`);
    }
    const secretLike = [...mod.variables, ...prod.variables].filter((v) => /pass|secret|token/i.test(v.name));
    assert.deepEqual(
      secretLike.map((v) => `${v.file}: ${v.name}`),
      [],
      'a variable would carry a secret into plans and state',
    );
  });

  it('backups are kept 30 days, taken 03:00-04:00 UTC, maintenance on Sunday 04:00-05:00 UTC', () => {
    assert.equal(primary('backup_retention_period'), 30);
    assert.equal(primary('backup_window'), '03:00-04:00');
    assert.equal(primary('maintenance_window'), 'sun:04:00-sun:05:00');
    assert.equal(primary('copy_tags_to_snapshot'), true);
    assert.equal(primary('delete_automated_backups'), false);
  });

  it('the instance is protected: deletion protection and a final snapshot with a stable name', () => {
    assert.equal(primary('deletion_protection'), true);
    assert.equal(replica('deletion_protection'), true);
    assert.equal(primary('skip_final_snapshot'), false);
    const finalName = String(primary('final_snapshot_identifier'));
    assert.ok(finalName.length > 0, 'final_snapshot_identifier is empty');
    assert.doesNotMatch(finalName, /timestamp\(/, 'timestamp() changes the name at every plan');
  });

  it('monitoring: postgresql and upgrade logs, Performance Insights with the KMS key, 60 s enhanced monitoring with its role', () => {
    assert.deepEqual(
      effective(
        attr(find(mod.resources, 'aws_db_instance', 'primary').body, 'enabled_cloudwatch_logs_exports'),
      ),
      '${local.log_exports}',
    );
    assert.deepEqual(mod.locals.log_exports, ['postgresql', 'upgrade']);
    assert.equal(primary('performance_insights_enabled'), true);
    assert.equal(primary('performance_insights_kms_key_id'), '${aws_kms_key.rds.arn}');
    assert.equal(primary('performance_insights_retention_period'), 7);
    assert.equal(primary('monitoring_interval'), 60);
    assert.equal(primary('monitoring_role_arn'), '${aws_iam_role.monitoring.arn}');
    const attachment = find(mod.resources, 'aws_iam_role_policy_attachment', 'monitoring').body;
    assert.match(String(attr(attachment, 'policy_arn')), /service-role\/AmazonRDSEnhancedMonitoringRole$/);
    const assume = blocks(find(mod.data, 'aws_iam_policy_document', 'monitoring_assume').body, 'statement');
    assert.deepEqual(attr(blocks(assume[0]!, 'principals')[0]!, 'identifiers'), [
      'monitoring.rds.amazonaws.com',
    ]);
  });

  it('parameter group postgres15: pg_stat_statements preloaded (pgvector is not: it needs no preload), DDL and slow-query logs, 200 connections, TLS only', () => {
    const group = find(mod.resources, 'aws_db_parameter_group', 'postgres15').body;
    assert.equal(attr(group, 'family'), 'postgres15');
    const parameters = Object.fromEntries(
      blocks(group, 'parameter').map((p) => [String(attr(p, 'name')), String(attr(p, 'value'))]),
    );
    assert.deepEqual(parameters, {
      shared_preload_libraries: 'pg_stat_statements',
      log_statement: 'ddl',
      log_min_duration_statement: '1000',
      max_connections: '200',
      'rds.force_ssl': '1',
    });
    assert.doesNotMatch(parameters.shared_preload_libraries, /vector/);
    assert.equal(primary('parameter_group_name'), '${aws_db_parameter_group.postgres15.name}');
    assert.equal(replica('parameter_group_name'), '${aws_db_parameter_group.postgres15.name}');
  });

  it('a read replica of the primary in another availability zone (us-east-1b in production), encrypted and private', () => {
    assert.equal(replica('replicate_source_db'), '${aws_db_instance.primary.identifier}');
    assert.equal(replica('availability_zone'), 'us-east-1b');
    assert.equal(replica('storage_encrypted'), true);
    assert.equal(replica('publicly_accessible'), false);
    assert.equal(replica('instance_class'), 'db.r5.large');
    // RDS for PostgreSQL cannot restore a read replica to a point in time: its automated backups
    // would only copy the primary's (docs/deployment.md says why they are off).
    assert.equal(replica('backup_retention_period'), 0);
    assert.equal(replica('backup_window'), undefined);
    // The primary's zones come from the subnet group (Multi-AZ picks them); the precondition keeps
    // the replica's zone among them, and the subnet rule demands two zones at least.
    const preconditions = blocks(
      blocks(find(mod.resources, 'aws_db_instance', 'replica').body, 'lifecycle')[0]!,
      'precondition',
    );
    assert.ok(
      preconditions.some((p) => String(attr(p, 'condition')).includes('var.replica_availability_zone')),
    );
    const subnetRule = blocks(find(mod.variables, '', 'subnet_ids').body, 'validation');
    assert.match(String(attr(subnetRule[0]!, 'condition')), /length\(var\.subnet_ids\) >= 2/);
  });

  it('automated backups are replicated to us-west-2 for 30 days, encrypted with a key of that region', () => {
    const replication = find(
      mod.resources,
      'aws_db_instance_automated_backups_replication',
      'backup_region',
    ).body;
    assert.equal(attr(replication, 'provider'), '${aws.backup_region}');
    assert.equal(attr(replication, 'source_db_instance_arn'), '${aws_db_instance.primary.arn}');
    assert.equal(effective(attr(replication, 'retention_period')), 30);
    assert.equal(attr(replication, 'kms_key_id'), '${aws_kms_key.backup_replica.arn}');
    assert.equal(
      attr(find(mod.resources, 'aws_kms_key', 'backup_replica').body, 'provider'),
      '${aws.backup_region}',
    );
    const backupProvider = prod.providers.find(
      (p) => p.name === 'aws' && attr(p.body, 'alias') === 'backup_region',
    );
    assert.ok(backupProvider, 'the production root has no aws provider aliased backup_region');
    assert.equal(fromRoot(attr(backupProvider.body, 'region')), 'us-west-2');
    assert.deepEqual(attr(moduleCall, 'providers'), {
      aws: '${aws}',
      'aws.backup_region': '${aws.backup_region}',
    });
  });

  it('the export bucket is KMS-encrypted, versioned, closed to the public, TLS-only and has a lifecycle', () => {
    const bucket = (type: string) => find(mod.resources, type, 'exports').body;
    const sse = blocks(
      blocks(bucket('aws_s3_bucket_server_side_encryption_configuration'), 'rule')[0]!,
      'apply_server_side_encryption_by_default',
    )[0]!;
    assert.equal(attr(sse, 'sse_algorithm'), 'aws:kms');
    assert.equal(attr(sse, 'kms_master_key_id'), '${aws_kms_key.rds.arn}');
    assert.equal(
      attr(blocks(bucket('aws_s3_bucket_versioning'), 'versioning_configuration')[0]!, 'status'),
      'Enabled',
    );
    const block = bucket('aws_s3_bucket_public_access_block');
    for (const key of [
      'block_public_acls',
      'block_public_policy',
      'ignore_public_acls',
      'restrict_public_buckets',
    ]) {
      assert.equal(attr(block, key), true, key);
    }
    assert.equal(
      attr(blocks(bucket('aws_s3_bucket_ownership_controls'), 'rule')[0]!, 'object_ownership'),
      'BucketOwnerEnforced',
    );
    const rules = Object.fromEntries(
      blocks(bucket('aws_s3_bucket_lifecycle_configuration'), 'rule').map((r) => [String(attr(r, 'id')), r]),
    );
    const exportsRule = rules['archive-then-expire-exports']!;
    assert.equal(attr(exportsRule, 'status'), 'Enabled');
    assert.equal(attr(blocks(exportsRule, 'filter')[0]!, 'prefix'), 'exports/');
    assert.equal(effective(attr(blocks(exportsRule, 'expiration')[0]!, 'days')), 365);
    assert.equal(attr(blocks(exportsRule, 'transition')[0]!, 'storage_class'), 'GLACIER');
    assert.ok(
      attr(
        blocks(rules['abort-incomplete-uploads']!, 'abort_incomplete_multipart_upload')[0]!,
        'days_after_initiation',
      ),
    );
    assert.equal(
      attr(bucket('aws_s3_bucket_policy'), 'policy'),
      '${data.aws_iam_policy_document.exports_bucket.json}',
    );
    const deny = blocks(find(mod.data, 'aws_iam_policy_document', 'exports_bucket').body, 'statement')[0]!;
    assert.equal(attr(deny, 'effect'), 'Deny');
    assert.equal(attr(blocks(deny, 'condition')[0]!, 'variable'), 'aws:SecureTransport');
    assert.equal(attr(bucket('aws_s3_bucket_logging'), 'bucket'), '${aws_s3_bucket.exports.id}');
  });

  it('DR reports under reports/ are audit evidence: their own rule, kept seven years, apart from the exports; the worker writes reports/ only', () => {
    const rules = blocks(
      find(mod.resources, 'aws_s3_bucket_lifecycle_configuration', 'exports').body,
      'rule',
    );
    const reports = rules.find((r) => attr(blocks(r, 'filter')[0] ?? {}, 'prefix') === 'reports/');
    assert.ok(reports, 'no lifecycle rule for reports/');
    assert.equal(attr(reports, 'status'), 'Enabled');
    assert.equal(effective(attr(blocks(reports, 'expiration')[0]!, 'days')), 2557);
    assert.equal(
      effective(attr(blocks(reports, 'noncurrent_version_expiration')[0]!, 'noncurrent_days')),
      2557,
    );
    // No rule reaches reports/ with a shorter expiration (S3 applies the earliest).
    for (const rule of rules) {
      const prefix = text(blocks(rule, 'filter')[0] ?? {}, 'prefix');
      const reaches = 'reports/'.startsWith(prefix);
      if (rule !== reports && reaches)
        assert.equal(blocks(rule, 'expiration').length, 0, String(attr(rule, 'id')));
    }
    const worker = blocks(find(mod.data, 'aws_iam_policy_document', 'worker').body, 'statement');
    const writes = worker.filter((s) => (attr(s, 'actions') as string[]).includes('s3:PutObject'));
    assert.deepEqual(
      writes.map((s) => attr(s, 'resources')),
      [['${aws_s3_bucket.exports.arn}/reports/*']],
    );
  });

  it('restores in the backup region: a subnet group, security group and the primary parameter group there, and the worker environment for it', () => {
    for (const [type, name] of [
      ['aws_db_subnet_group', 'backup_region'],
      ['aws_security_group', 'backup_region'],
      ['aws_db_parameter_group', 'backup_region'],
    ] as const) {
      assert.equal(
        attr(find(mod.resources, type, name).body, 'provider'),
        '${aws.backup_region}',
        `${type}.${name}`,
      );
    }
    const group = find(mod.resources, 'aws_db_parameter_group', 'backup_region').body;
    assert.equal(attr(group, 'family'), 'postgres15');
    assert.equal(
      attr(blocks(group, 'dynamic')[0]!['parameter'] as HclBody, 'for_each'),
      '${aws_db_parameter_group.postgres15.parameter}',
    );
    assert.equal(attr(moduleCall, 'backup_region_network'), '${var.backup_region_network}');
    assert.ok(prod.outputs.some((o) => o.name === 'backup_region_worker_environment'));
    // The queue `dbops dr-test --region <backup region>` starts on (workers/cli/recovery.ts).
    const backupEnvironment = attr(find(mod.outputs, '', 'backup_region_worker_environment').body, 'value');
    assert.match(String(backupEnvironment), /DBOPS_TASK_QUEUE.*dbops-\$\{local\.backup_region\}/s);
  });

  it('the worker environment gives DR copies their class and real recoveries production settings', () => {
    const environment = mod.locals.worker_rds_environment as Record<string, string>;
    assert.equal(environment.DBOPS_RDS_DR_INSTANCE_CLASS, '${var.dr_instance_class}');
    assert.equal(variableDefault(mod, 'dr_instance_class'), 'db.t3.medium');
    assert.equal(environment.DBOPS_RDS_MONITORING_ROLE_ARN, '${aws_iam_role.monitoring.arn}');
    assert.equal(environment.DBOPS_RDS_CA_CERTIFICATE, '${local.ca_cert_identifier}');
    assert.equal(environment.DBOPS_RDS_MAX_ALLOCATED_STORAGE_GB, '${tostring(var.max_allocated_storage_gb)}');
    assert.equal(environment.DBOPS_RDS_LOG_EXPORTS, '${join(",",local.log_exports)}');
  });

  it('the export role can be assumed only by RDS export tasks of this account', () => {
    const assume = blocks(find(mod.data, 'aws_iam_policy_document', 'export_assume').body, 'statement')[0]!;
    assert.deepEqual(attr(blocks(assume, 'principals')[0]!, 'identifiers'), ['export.rds.amazonaws.com']);
    assert.equal(attr(blocks(assume, 'condition')[0]!, 'variable'), 'aws:SourceAccount');
  });

  it('every variable has a type and a description; outputs include endpoints, resource id, bucket and role ARNs', () => {
    for (const variable of [...mod.variables, ...prod.variables]) {
      assert.ok(
        attr(variable.body, 'type') !== undefined,
        `variable ${variable.name} in ${variable.file} has no type`,
      );
      assert.ok(
        text(variable.body, 'description').length > 0,
        `variable ${variable.name} has no description`,
      );
    }
    const outputs = prod.outputs.map((o) => o.name);
    for (const name of [
      'endpoint',
      'replica_endpoint',
      'resource_id',
      'export_bucket',
      'export_role_arn',
      'monitoring_role_arn',
      'worker_policy_arn',
    ]) {
      assert.ok(outputs.includes(name), `production has no output ${name}`);
    }
  });
});
