/**
 * The dbops worker's IAM policy (Terraform) against the AWS calls of the aws provider (its code):
 * the policy must allow exactly the actions the code needs, so neither can change alone.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { projectRoot } from '../../activities/config-types';
import {
  ACTION_CONDITION_KEYS,
  deriveActions,
  unsupportedConditionKeys,
  usesAwsClients,
  type DerivedAction,
} from '../helpers/iam-actions';
import { attr, blocks, find, parseTerraformDir, text, type HclBody } from '../helpers/terraform';

const activitiesDir = path.join(projectRoot, 'activities');
const providerFile = path.join(activitiesDir, 'control-plane', 'aws-rds.ts');
const moduleDir = path.join(projectRoot, 'infra', 'terraform', 'modules', 'pgvector-rds');

/** Every action the activities' AWS SDK calls need, with the calls that need it. */
async function actionsTheCodeNeeds(): Promise<Map<string, string[]>> {
  const entries = await readdir(activitiesDir, { withFileTypes: true, recursive: true });
  const needed = new Map<string, string[]>();
  for (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const file = path.join(entry.parentPath, entry.name);
    const source = await readFile(file, 'utf8');
    if (!usesAwsClients(source)) continue;
    for (const { action, because } of deriveActions(source, path.relative(projectRoot, file))) {
      needed.set(action, [...(needed.get(action) ?? []), `${path.relative(projectRoot, file)} ${because}`]);
    }
  }
  return needed;
}

async function workerStatements(): Promise<HclBody[]> {
  const dir = await parseTerraformDir(moduleDir);
  return blocks(find(dir.data, 'aws_iam_policy_document', 'worker').body, 'statement');
}

const effect = (statement: HclBody) => text(statement, 'effect') || 'Allow';
const list = (statement: HclBody, key: string) => (attr(statement, key) as string[] | undefined) ?? [];
const conditions = (statement: HclBody) =>
  blocks(statement, 'condition').map((c) => ({
    test: String(attr(c, 'test')),
    variable: String(attr(c, 'variable')),
    values: attr(c, 'values') as string[],
  }));

/** Every (statement, action, condition key) the action does not support. */
function misplacedConditionKeys(statements: HclBody[]): string[] {
  return statements.flatMap((statement) => {
    const keys = conditions(statement).map((c) => c.variable);
    return list(statement, 'actions').flatMap((action) =>
      unsupportedConditionKeys(action, keys).map(
        (key) => `${String(attr(statement, 'sid'))}: ${action} with ${key}`,
      ),
    );
  });
}

describe('IAM: the worker policy allows exactly the AWS actions the aws provider calls', () => {
  it('the scan derives actions from SDK calls: imported commands and paginators (aliases too), S3 names mapped, the signer; names not imported from the SDK are ignored', () => {
    const source = `
      // the policy lists every new XxxCommand( of this file
      import { CreateDBSnapshotCommand, RDSClient, paginateDescribeDBSnapshots } from '@aws-sdk/client-rds';
      import { ListObjectsV2Command as List, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
      import { Signer } from '@aws-sdk/rds-signer';
      import { SomethingCommand } from './elsewhere';
      await rds.send(new CreateDBSnapshotCommand({}));
      for await (const page of paginateDescribeDBSnapshots({ client: rds }, {})) {}
      await s3.send(new HeadObjectCommand({}));
      new SomethingCommand();
    `;
    const actions = (derived: DerivedAction[]) => [...new Set(derived.map((d) => d.action))].sort();
    assert.deepEqual(actions(deriveActions(source, 'sample.ts')), [
      'kms:Decrypt', // an object of the SSE-KMS bucket read
      'rds-db:connect',
      'rds:AddTagsToResource',
      'rds:CreateDBSnapshot',
      'rds:DescribeDBSnapshots',
      's3:GetObject',
    ]);
    // An import under another name is followed to the operation it names; an import not called needs nothing.
    const aliased = `import { ListObjectsV2Command as List, GetObjectCommand } from '@aws-sdk/client-s3'; s3.send(new List({}));`;
    assert.deepEqual(actions(deriveActions(aliased, 'aliased.ts')), ['s3:ListBucket']);
  });

  it('the scan refuses the aggregated clients, whose calls it cannot see', () => {
    assert.throws(
      () => deriveActions(`import { RDS } from '@aws-sdk/client-rds';`, 'aggregated.ts'),
      /aggregated\.ts imports the aggregated RDS client from @aws-sdk\/client-rds/,
    );
  });

  it('the Terraform worker policy allows exactly the actions derived from activities/ (provider: activities/control-plane/aws-rds.ts)', async () => {
    assert.ok(
      existsSync(providerFile),
      `${path.relative(projectRoot, providerFile)} is missing: the aws provider's calls are what the worker policy must match`,
    );
    const needed = await actionsTheCodeNeeds();
    const allowed = new Set(
      (await workerStatements()).filter((s) => effect(s) === 'Allow').flatMap((s) => list(s, 'actions')),
    );
    const missing = [...needed.keys()].filter((a) => !allowed.has(a)).sort();
    const extra = [...allowed].filter((a) => !needed.has(a)).sort();
    const explain = missing.map((a) => `  ${a} (needed by ${needed.get(a)!.join(', ')})`);
    assert.deepEqual(
      { missing, extra },
      { missing: [], extra: [] },
      `the worker policy (infra/terraform/modules/pgvector-rds/worker-iam.tf) and the code disagree.\n` +
        `Allowed but not needed: ${extra.join(', ') || 'none'}\nNeeded but not allowed:\n${explain.join('\n') || '  none'}`,
    );
    assert.ok(needed.has('rds:CreateDBSnapshot'), 'the scan found no CreateDBSnapshot call: it sees nothing');
  });

  it('no wildcard actions, and "*" as resource only for the read-only DescribeExportTasks, held to the region', async () => {
    for (const statement of await workerStatements()) {
      const sid = String(attr(statement, 'sid'));
      for (const action of list(statement, 'actions')) assert.doesNotMatch(action, /\*/, `${sid}: ${action}`);
      if (!list(statement, 'resources').includes('*')) continue;
      assert.deepEqual(
        list(statement, 'actions'),
        ['rds:DescribeExportTasks'],
        `${sid} allows "*" resources`,
      );
      assert.equal(attr(blocks(statement, 'condition')[0] ?? {}, 'variable'), 'aws:RequestedRegion', sid);
    }
  });

  it('the worker can never delete or modify the production primary or its replica (explicit deny)', async () => {
    const denies = (await workerStatements()).filter((s) => effect(s) === 'Deny');
    const production = denies.find((s) => list(s, 'resources').includes('${aws_db_instance.primary.arn}'));
    assert.ok(production, 'no Deny statement for the primary');
    assert.deepEqual(list(production, 'actions'), ['rds:DeleteDBInstance', 'rds:ModifyDBInstance']);
    assert.deepEqual(list(production, 'resources'), [
      '${aws_db_instance.primary.arn}',
      '${aws_db_instance.replica.arn}',
    ]);
  });

  it('nor a real recovery: the names pitrRestore and snapshotRestore give, and the restore purpose tag; DR test copies stay deletable', async () => {
    const dir = await parseTerraformDir(moduleDir);
    const denies = (await workerStatements()).filter(
      (s) => effect(s) === 'Deny' && list(s, 'actions').join() === 'rds:DeleteDBInstance',
    );
    const byName = denies.find((s) => conditions(s).length === 0);
    assert.equal(byName && attr(byName, 'resources'), '${local.recovery_instance_arns}');
    const names = dir.locals.recovery_instance_arns as string[];
    const patterns = names.map(
      (arn) =>
        new RegExp(
          `^${arn.split(':db:')[1]!.replace('${var.identifier}', 'mcp-demo-prod').replace('*', '.*')}$`,
        ),
    );
    // The names the workflows derive (workflows/pitr-restore.ts, snapshot-restore.ts), and a DR test copy's.
    const pitr = await readFile(path.join(projectRoot, 'workflows', 'pitr-restore.ts'), 'utf8');
    const snapshot = await readFile(path.join(projectRoot, 'workflows', 'snapshot-restore.ts'), 'utf8');
    assert.match(pitr, /`-pitr-\$\{utcStamp\(/);
    assert.match(snapshot, /`-restore-\$\{utcStamp\(/);
    const denied = (name: string) => patterns.some((p) => p.test(name));
    assert.ok(denied('mcp-demo-prod-pitr-20261127-120000'));
    assert.ok(denied('mcp-demo-prod-restore-20261127-120000'));
    assert.ok(!denied('mcp-demo-prod-dr-test-20261127'), 'a DR test copy must stay deletable');
    assert.ok(
      names.some((arn) => arn.startsWith('${local.backup_rds_arn_prefix}')),
      'in the backup region too',
    );
    const byTag = denies.find((s) => conditions(s).length > 0);
    assert.deepEqual(byTag && conditions(byTag), [
      { test: 'StringEquals', variable: 'aws:ResourceTag/dbops:purpose', values: ['restore'] },
    ]);
  });

  it('a condition key tested on an action that does not support it fails (the Service Authorization Reference table): GrantIsForAWSResource on DescribeKey', () => {
    assert.deepEqual(unsupportedConditionKeys('kms:DescribeKey', ['kms:GrantIsForAWSResource']), [
      'kms:GrantIsForAWSResource',
    ]);
    assert.deepEqual(
      unsupportedConditionKeys('kms:CreateGrant', ['kms:GrantIsForAWSResource', 'kms:ViaService']),
      [],
    );
    assert.deepEqual(
      unsupportedConditionKeys('kms:GenerateDataKey', ['kms:EncryptionContext:aws:s3:arn']),
      [],
    );
    // Global keys apply to every action; tag keys only where the table lists them.
    assert.deepEqual(unsupportedConditionKeys('rds:DescribeExportTasks', ['aws:RequestedRegion']), []);
    assert.deepEqual(
      unsupportedConditionKeys('rds:DeleteDBSnapshot', ['aws:ResourceTag/dbops:workflow-id']),
      [],
    );
    assert.deepEqual(unsupportedConditionKeys('s3:PutObject', ['aws:ResourceTag/x', 'kms:ViaService']), [
      'aws:ResourceTag/x',
      'kms:ViaService',
    ]);
    // The old statement: CreateGrant and DescribeKey together under GrantIsForAWSResource.
    assert.deepEqual(
      misplacedConditionKeys([
        // As python-hcl2 parses it: every attribute wrapped in a one-item list.
        {
          sid: ['GrantExportKeyToRds'],
          actions: [['kms:CreateGrant', 'kms:DescribeKey']],
          condition: [{ test: ['Bool'], variable: ['kms:GrantIsForAWSResource'], values: [['true']] }],
        },
      ]),
      ['GrantExportKeyToRds: kms:DescribeKey with kms:GrantIsForAWSResource'],
    );
  });

  it('every condition of the worker policy is one its actions support', async () => {
    const statements = await workerStatements();
    assert.deepEqual(misplacedConditionKeys(statements), []);
    const conditioned = statements.filter((s) => conditions(s).length > 0).flatMap((s) => list(s, 'actions'));
    const serviceKeyed = conditioned.filter((action) => !['rds:DescribeExportTasks'].includes(action));
    assert.deepEqual(
      serviceKeyed.filter((action) => ACTION_CONDITION_KEYS[action] === undefined),
      [],
      'an action with service or tag condition keys is missing from the table',
    );
  });

  it('KMS: DescribeKey in its own statement, held to RDS by kms:ViaService; CreateGrant only for an AWS resource through RDS', async () => {
    const statements = await workerStatements();
    const describe = statements.filter((s) => list(s, 'actions').includes('kms:DescribeKey'));
    assert.equal(describe.length, 1);
    assert.deepEqual(list(describe[0]!, 'actions'), ['kms:DescribeKey']);
    assert.deepEqual(conditions(describe[0]!), [
      {
        test: 'StringEquals',
        variable: 'kms:ViaService',
        values: '${local.rds_via_service}' as unknown as string[],
      },
    ]);
    const grant = statements.find((s) => list(s, 'actions').includes('kms:CreateGrant'))!;
    assert.deepEqual(
      conditions(grant).map((c) => c.variable),
      ['kms:GrantIsForAWSResource', 'kms:ViaService'],
    );
    const dir = await parseTerraformDir(moduleDir);
    assert.deepEqual(dir.locals.rds_via_service, [
      'rds.${local.region}.amazonaws.com',
      'rds.${local.backup_region}.amazonaws.com',
    ]);
  });

  it('rds:DeleteDBSnapshot only on manual snapshots of the operations prefix that carry a dbops owner tag', async () => {
    const statements = (await workerStatements()).filter((s) =>
      list(s, 'actions').includes('rds:DeleteDBSnapshot'),
    );
    assert.equal(statements.length, 1);
    assert.deepEqual(list(statements[0]!, 'actions'), ['rds:DeleteDBSnapshot']);
    assert.deepEqual(list(statements[0]!, 'resources'), [
      '${local.rds_arn_prefix}:snapshot:${var.operations_prefix}*',
    ]);
    assert.deepEqual(conditions(statements[0]!), [
      { test: 'Null', variable: 'aws:ResourceTag/dbops:workflow-id', values: ['false'] },
    ]);
  });
});
