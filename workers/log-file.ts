/**
 * A Temporal runtime logger that appends to a file instead of the terminal: `npm start` keeps its
 * console to its own progress lines and sends the worker's detail (the workflow bundle's
 * statistics, failed activities and workflows with their stack traces) to the log file its
 * banner names.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { formatWithOptions } from 'node:util';

import { DefaultLogger, type LogLevel } from '@temporalio/worker';

export function fileLogger(file: string, level: LogLevel = 'INFO'): DefaultLogger {
  mkdirSync(path.dirname(file), { recursive: true });
  return new DefaultLogger(level, ({ level, message, meta, timestampNanos }) => {
    const time = new Date(Number(timestampNanos / 1_000_000n)).toISOString();
    const detail = meta === undefined ? '' : ` ${formatWithOptions({ colors: false, depth: 6 }, meta)}`;
    // Synchronous: the lines are few, and none is lost when the process ends.
    appendFileSync(file, `${time} [${level}] ${message}${detail}\n`);
  });
}
