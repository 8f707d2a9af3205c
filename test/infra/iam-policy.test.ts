/**
 * The dbops worker's IAM policy (Terraform) against the AWS calls of the aws provider (its code):
 * the policy must allow exactly the actions the code needs, so neither can change alone.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { projectRoot } from '../../activities/config-types';
import { deriveActions, usesAwsClients, type DerivedAction } from '../helpers/iam-actions';
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

  it('the worker can never delete the production primary or its replica (explicit deny)', async () => {
    const denies = (await workerStatements()).filter((s) => effect(s) === 'Deny');
    const deleteDeny = denies.find((s) => list(s, 'actions').includes('rds:DeleteDBInstance'));
    assert.ok(deleteDeny, 'no Deny statement for rds:DeleteDBInstance');
    assert.deepEqual(list(deleteDeny, 'resources'), [
      '${aws_db_instance.primary.arn}',
      '${aws_db_instance.replica.arn}',
    ]);
  });
});
