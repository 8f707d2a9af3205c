import assert from 'node:assert/strict';

import { metricMeter } from '@temporalio/activity';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import { recordBackfillRows } from '../../workflows/lib/metrics';
import { recordEveryMetric } from '../fixtures/metrics-workflow';
import { metricsUrl } from '../helpers/metrics-runtime';
import { createDevServerEnv } from '../helpers/temporal';

/** The sample lines of one metric, e.g. `name{labels} value`. */
function samples(text: string, name: string): string[] {
  return text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

describe('worker metrics endpoint (Prometheus, dev server)', () => {
  let env: TestWorkflowEnvironment;
  let scraped: string;
  const finishedAtMs = Date.UTC(2026, 10, 1, 6, 30);

  before(async () => {
    env = await createDevServerEnv();
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'metrics-test',
      workflowsPath: require.resolve('../fixtures/metrics-workflow'),
      activities: {
        writeBatch(rows: number): Promise<void> {
          recordBackfillRows(metricMeter, 'conversations', rows);
          return Promise.resolve();
        },
      },
    });
    await worker.runUntil(
      env.client.workflow.execute(recordEveryMetric, {
        taskQueue: 'metrics-test',
        workflowId: 'metrics-1',
        args: [finishedAtMs],
      }),
    );
    const response = await fetch(metricsUrl());
    assert.equal(response.status, 200);
    scraped = await response.text();
  });
  after(async () => {
    await env?.teardown();
  });

  it('serves the Temporal SDK metrics the worker alerts use', () => {
    const executions = samples(scraped, 'temporal_activity_execution_latency_count');
    assert.ok(
      executions.some((line) => /activity_type="writeBatch"/.test(line) && / 2$/.test(line)),
      executions.join('\n'),
    );
    assert.ok(samples(scraped, 'temporal_activity_schedule_to_start_latency_bucket').length > 0);
    assert.ok(samples(scraped, 'temporal_workflow_completed_total').length > 0);
  });

  it('serves the backfill rows counter summed over batches', () => {
    const rows = samples(scraped, 'dbops_backfill_rows_processed_total');
    assert.equal(rows.length, 1, rows.join('\n'));
    assert.match(rows[0]!, /table="conversations"/);
    assert.match(rows[0]!, / 500$/);
  });

  it('serves the DR test RTO, result and last-success time, and the last backup time', () => {
    const only = (name: string) => {
      const lines = samples(scraped, name);
      assert.equal(lines.length, 1, `${name}:\n${lines.join('\n')}`);
      assert.match(lines[0]!, /instance_id="mcp-demo-prod"/);
      return Number(lines[0]!.split(' ').pop());
    };
    assert.equal(only('dbops_dr_test_rto_seconds'), 412.5);
    assert.equal(only('dbops_dr_test_success'), 1);
    assert.equal(only('dbops_dr_test_last_success_timestamp_seconds'), finishedAtMs / 1000);
    assert.equal(only('dbops_backup_last_success_timestamp_seconds'), finishedAtMs / 1000);
  });
});
