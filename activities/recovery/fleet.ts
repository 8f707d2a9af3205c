/**
 * The fleet workflow's activities: its summary written as JSON and Markdown beside the DR reports
 * (one file pair per fleet run, linking each instance's own report), and the outcome of a child an
 * earlier run of the same fleet started (a retried fleet run waits for it instead of running the
 * operation twice; cancelling the fleet cancels that child too).
 */
import { Context } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';

import type { FleetReport } from '../../workflows/fleet';
import { heartbeatWhile } from '../heartbeat';
import type { RecoveryStorage } from './reports';

/** How a child ended, as the fleet reads it. */
export type ChildOutcome =
  | { status: 'completed'; result: unknown }
  | { status: 'failed'; message: string; type: string | null; details: unknown[] }
  | { status: 'cancelled'; message: string };

export function createFleetActivities({ storage }: { storage: RecoveryStorage }) {
  return {
    /** Writes `fleet-<operation>-<stamp>.json` and `.md`; returns where they went. */
    async writeFleetReport(report: FleetReport): Promise<string[]> {
      const name = `fleet-${report.operation}-${report.startedAt.replace(/[-:]/g, '').replace(/\.\d+/, '')}`;
      return storage.reports.write([
        {
          name: `${name}.json`,
          body: `${JSON.stringify(report, null, 2)}\n`,
          contentType: 'application/json',
        },
        { name: `${name}.md`, body: renderFleetReportMarkdown(report), contentType: 'text/markdown' },
      ]);
    },

    /** Waits for the child run `workflowId` to end, heartbeating; cancelled, it cancels the child. */
    async awaitFleetChild(workflowId: string): Promise<ChildOutcome> {
      const handle = Context.current().client.workflow.getHandle(workflowId);
      try {
        const result = await heartbeatWhile<unknown>(() => handle.result(), {
          onCancel: () => handle.cancel(),
        });
        return { status: 'completed', result };
      } catch (error) {
        if (!(error instanceof WorkflowFailedError)) throw error;
        const cause = error.cause;
        if (cause instanceof CancelledFailure)
          return { status: 'cancelled', message: `${workflowId} was cancelled` };
        if (cause instanceof ApplicationFailure) {
          return {
            status: 'failed',
            message: cause.message,
            type: cause.type ?? null,
            details: cause.details ?? [],
          };
        }
        return { status: 'failed', message: cause?.message ?? error.message, type: null, details: [] };
      }
    },
  };
}

/** The summary as a person reads it: one row per instance, then each one's findings. */
export function renderFleetReportMarkdown(report: FleetReport): string {
  const passed = report.instances.filter((i) => i.outcome === 'passed' || i.outcome === 'warning').length;
  const lines = [
    `# Fleet ${report.operation}${report.tag === null ? '' : ` of ${report.tag}`}: ` +
      `${report.ok ? 'PASSED' : 'FAILED'} (${passed} of ${report.instances.length} passed)`,
    '',
    `- Workflow: \`${report.workflowId}\``,
    `- Started: ${report.startedAt}, finished: ${report.finishedAt}`,
    `- Concurrency: ${report.concurrency}`,
    `- Not selected: ${report.skipped.length === 0 ? 'none' : report.skipped.map((id) => `\`${id}\``).join(', ')}`,
    '',
    '| instance | outcome | RPO | RTO | summary | child run | report |',
    '|---|---|---|---|---|---|---|',
  ];
  const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, '<br>');
  const seconds = (value: number | null) => (value === null ? '-' : `${value} s`);
  for (const i of report.instances) {
    const links = i.reportLocations.filter((l) => l.endsWith('.md'));
    lines.push(
      `| ${i.instanceId} | ${i.outcome ?? i.state} | ${seconds(i.rpoSeconds)} | ${seconds(i.rtoSeconds)} | ` +
        `${cell(i.summary)} | \`${i.workflowId}\` | ${links.length === 0 ? '-' : links.map((l) => `[report](${l})`).join(' ')} |`,
    );
  }
  for (const i of report.instances.filter((instance) => instance.findings.length > 0)) {
    lines.push('', `## ${i.instanceId}`, '', ...i.findings.map((finding) => `- ${cell(finding)}`));
  }
  return `${lines.join('\n')}\n`;
}
