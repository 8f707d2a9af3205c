/**
 * The DR test against damaged snapshots (dev server, local provider on real clusters): each case
 * damages the real backup of one snapshot, runs one DR test (one restore), and checks that it
 * fails naming what is damaged and which check caught it, and that its copy is gone. The snapshot
 * is put back as it was after each case.
 *
 * Which check catches what:
 *   - bytes the backup manifest describes (a changed byte, a missing file, truncated WAL):
 *     pg_verifybackup, run by the restore on its copy of the backup before starting it;
 *   - a damaged page the manifest was rewritten to agree with: the data checksum fails the read,
 *     which the amcheck check reports;
 *   - rows gone, or a table missing, in a backup that verifies: row counts and content hashes
 *     recorded with the snapshot (fingerprints), and the runbook's conversations check.
 * A damaged tuple header on a page whose checksum holds (amcheck alone) and one changed value
 * (content hashes alone) are shown on a real cluster in test/activities/postgres/dr-checks.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm, truncate } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { Client } from 'pg';

import { withClient } from '../../activities/postgres/connect';
import { backup, drTest } from '../../workflows';
import type { DrTestReport } from '../../workflows/lib/recovery';
import {
  backupEndSegment,
  changeByte,
  firstTupleOffset,
  rebuildBackup,
  rewriteManifest,
} from '../helpers/damage';
import { startRecoveryStack, type RecoveryStack } from '../helpers/recovery';

const execFileAsync = promisify(execFile);
const SOURCE = 'dmg-src';
const CONVERSATIONS = 200;
const fast = { pollInterval: '1 second' };

describe('drTest on damaged snapshots (dev server, local provider on real clusters)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;
  let snapshotId: string;
  let backupDir: string;
  let pristine: string;
  /** Relation files (relative to the backup) of the application's tables. */
  let files: { conversations: string; chunks: string };
  let writesDuringBackup: number;
  let runs = 0;

  before(async () => {
    stack = await startRecoveryStack({
      name: 'dr-damage',
      sourceInstanceId: SOURCE,
      conversations: CONVERSATIONS,
      chunksPerConversation: 2,
    });
    const source = new Client({ ...stack.source.endpoint });
    source.on('error', () => undefined);
    await source.connect();
    try {
      // Hint bits set now, so reading the backup's pages later writes no page images to replay over damage.
      await source.query('VACUUM ANALYZE');
      const { rows } = await source.query<{ conversations: string; chunks: string }>(
        `SELECT pg_relation_filepath('conversations') AS conversations,
                pg_relation_filepath('conversation_chunks') AS chunks`,
      );
      files = { conversations: rows[0]!.conversations, chunks: rows[0]!.chunks };
      await source.query(
        'CREATE TABLE writes (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())',
      );
      // Writes go on while the backup runs and after it: the fingerprints must be of the backup's own moment.
      let writing = true;
      const writer = (async () => {
        while (writing) {
          await source.query('INSERT INTO writes DEFAULT VALUES');
          await sleep(5);
        }
      })();
      try {
        const taken = await stack.env.client.workflow.execute(backup, {
          taskQueue: stack.taskQueue,
          workflowId: 'dr-damage-backup',
          args: [{ instanceId: SOURCE, timeouts: fast }],
        });
        snapshotId = taken.snapshotId;
        await sleep(200);
      } finally {
        writing = false;
        await writer;
      }
      writesDuringBackup = Number(
        (await source.query<{ n: string }>('SELECT count(*) AS n FROM writes')).rows[0]!.n,
      );
    } finally {
      await source.end();
    }
    backupDir = path.join(stack.stateDir, 'snapshots', snapshotId, 'backup');
    pristine = path.join(stack.stateDir, 'pristine-backup');
    await execFileAsync('cp', ['-a', backupDir, pristine]);
  });
  after(async () => {
    await stack?.teardown();
  });

  /** Puts the snapshot's backup back as it was taken. */
  async function restorePristine(): Promise<void> {
    await rm(backupDir, { recursive: true, force: true });
    await execFileAsync('cp', ['-a', pristine, backupDir]);
  }

  async function drTestReport(): Promise<DrTestReport> {
    const handle = await stack.env.client.workflow.start(drTest, {
      taskQueue: stack.taskQueue,
      workflowId: `dr-damage-${++runs}`,
      args: [{ instanceId: SOURCE, timeouts: fast }],
    });
    return handle.result().then(
      (report) => report,
      (error: unknown) => {
        assert.ok(error instanceof WorkflowFailedError, String(error));
        assert.ok(error.cause instanceof ApplicationFailure, String(error.cause));
        assert.equal(error.cause.type, 'DrTestFailed', error.cause.message);
        return error.cause.details![0] as DrTestReport;
      },
    );
  }

  /** Damages the snapshot, runs one DR test, puts the snapshot back; the copy must be gone. */
  async function failedWith(damage: () => Promise<void>): Promise<DrTestReport> {
    await damage();
    try {
      const report = await drTestReport();
      assert.equal(report.ok, false, JSON.stringify(report.checks, null, 2));
      assert.equal(report.snapshot?.snapshotId, snapshotId);
      assert.equal(report.temporaryInstanceDeleted, true, JSON.stringify(report.checks));
      assert.deepEqual(await stack.instanceIds(), [SOURCE], 'the copy is gone');
      return report;
    } finally {
      await restorePristine();
    }
  }

  const check = (report: DrTestReport, name: string) => report.checks.find((c) => c.name === name);
  const failedChecks = (report: DrTestReport) =>
    report.checks.filter((c) => c.status === 'failed').map((c) => c.name);

  it("passes on the snapshot as taken: its fingerprints are of the backup's own moment, not of the source afterwards", async () => {
    const report = await drTestReport();
    assert.equal(report.ok, true, JSON.stringify(report.checks, null, 2));
    assert.match(check(report, 'table-contents')!.detail, /^\d+ tables match the snapshot's content hashes/);
    assert.match(check(report, 'amcheck')!.detail, / B-tree indexes of mcp_db: no corruption$/);
    const recorded = (await stack.plane.describeSnapshot(snapshotId)).tableRowCounts![
      'mcp_db.public.writes'
    ]!;
    assert.ok(recorded > 0 && recorded < writesDuringBackup, `${recorded} of ${writesDuringBackup} writes`);
  });

  it('a changed byte inside a tuple of conversations: pg_verifybackup fails the restore, naming the file and table', async () => {
    const file = path.join(backupDir, files.conversations);
    const report = await failedWith(async () => changeByte(file, (await firstTupleOffset(file)).dataStart));
    assert.match(
      report.error!,
      new RegExp(
        `is failed: snapshot ${snapshotId} is damaged: pg_verifybackup found checksum mismatch for file "${files.conversations}" \\(table mcp_db\\.public\\.conversations\\)$`,
      ),
    );
    assert.deepEqual(failedChecks(report), [], 'the copy never started: no check ran');
  });

  it('a missing relation file: pg_verifybackup fails the restore, naming the file and table', async () => {
    const report = await failedWith(() => rm(path.join(backupDir, files.chunks)));
    assert.match(
      report.error!,
      new RegExp(
        `pg_verifybackup found "${files.chunks}" \\(table mcp_db\\.public\\.conversation_chunks\\) is present in the manifest but not on disk$`,
      ),
    );
  });

  it('a truncated WAL segment: pg_verifybackup fails the restore, naming the segment', async () => {
    const { file, offset } = await backupEndSegment(backupDir);
    const report = await failedWith(() => truncate(file, Math.floor(offset / 2)));
    // Where the cut falls in a WAL page decides which of pg_waldump's two reads reports it: a page
    // cut short ("could not read file "X": read 4808 of 8192") or none left ("could not read from
    // file X, offset N: read 0 of 8192"). Either names the segment.
    const segment = path.basename(file);
    assert.match(
      report.error!,
      new RegExp(
        `pg_verifybackup found could not read (file "${segment}"|from file ${segment}, offset \\d+): read \\d+ of \\d+; WAL parsing failed for timeline 1$`,
      ),
    );
  });

  it('a changed byte inside a tuple, the manifest rewritten to agree: the data checksum fails the read (amcheck check)', async () => {
    const file = path.join(backupDir, files.conversations);
    const report = await failedWith(async () => {
      await changeByte(file, (await firstTupleOffset(file)).dataStart);
      await rewriteManifest(backupDir, [files.conversations]);
    });
    assert.equal(report.error, null);
    assert.match(
      check(report, 'amcheck')!.detail,
      new RegExp(
        `^\\d+ damaged: mcp_db\\.public\\.conversations: ERROR: invalid page in block 0 of relation ${files.conversations};`,
      ),
    );
    assert.equal(check(report, 'conversations')!.detail, 'not read: amcheck found conversations damaged');
    assert.deepEqual(failedChecks(report), ['amcheck', 'conversations', 'row-counts', 'table-contents']);
  });

  it('an empty conversations table (its file cut to nothing, the manifest rewritten to agree): conversations, row counts and content hashes', async () => {
    const report = await failedWith(async () => {
      await truncate(path.join(backupDir, files.conversations), 0);
      await rewriteManifest(backupDir, [files.conversations]);
    });
    assert.equal(report.error, null);
    assert.equal(check(report, 'amcheck')!.status, 'passed', check(report, 'amcheck')!.detail);
    assert.match(
      check(report, 'row-counts')!.detail,
      new RegExp(
        `^1 of \\d+ tables differ: mcp_db\\.public\\.conversations: 0 rows, expected ${CONVERSATIONS}$`,
      ),
    );
    assert.equal(
      check(report, 'table-contents')!.detail,
      '1 differ: mcp_db.public.conversations: contents differ from the snapshot (0 rows)',
    );
    assert.ok(failedChecks(report).includes('conversations'), JSON.stringify(report.checks));
  });

  it('a missing table (the backup rebuilt without conversation_chunks): row counts, content hashes and the vector checks', async () => {
    const report = await failedWith(() =>
      rebuildBackup(backupDir, (endpoint) =>
        withClient(endpoint, (client) => client.query('DROP TABLE conversation_chunks')),
      ),
    );
    assert.equal(report.error, null);
    assert.match(
      check(report, 'row-counts')!.detail,
      new RegExp(
        `^1 of \\d+ tables differ: mcp_db\\.public\\.conversation_chunks: missing \\(expected ${CONVERSATIONS * 2} rows\\)$`,
      ),
    );
    assert.equal(
      check(report, 'table-contents')!.detail,
      '1 differ: mcp_db.public.conversation_chunks: missing',
    );
    assert.deepEqual(failedChecks(report), ['row-counts', 'table-contents', 'vector-indexes', 'recall']);
  });
});
