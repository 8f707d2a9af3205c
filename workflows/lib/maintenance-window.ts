/**
 * The weekly maintenance window in RDS syntax (`ddd:hh24:mi-ddd:hh24:mi`, UTC, e.g.
 * `sun:04:00-sun:05:00`). Pure code: config validates it, the maintenance workflow checks it
 * against workflow time.
 */

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
const MINUTES_PER_WEEK = 7 * 24 * 60;

export const MAINTENANCE_WINDOW_RULE =
  'ddd:hh24:mi-ddd:hh24:mi in UTC, e.g. sun:04:00-sun:05:00, at least 30 minutes long';

export interface MaintenanceWindow {
  /** The window as written, for messages. */
  text: string;
  /** Minutes since Sunday 00:00 UTC. */
  startMinute: number;
  endMinute: number;
}

/** Parses the window, or returns undefined when it breaks the rule (RDS also wants >= 30 minutes). */
export function parseMaintenanceWindow(text: string): MaintenanceWindow | undefined {
  const match = /^([a-z]{3}):(\d{2}):(\d{2})-([a-z]{3}):(\d{2}):(\d{2})$/.exec(text.trim().toLowerCase());
  if (!match) return undefined;
  const start = minuteOfWeek(match[1]!, match[2]!, match[3]!);
  const end = minuteOfWeek(match[4]!, match[5]!, match[6]!);
  if (start === undefined || end === undefined) return undefined;
  const length = (end - start + MINUTES_PER_WEEK) % MINUTES_PER_WEEK;
  if (length < 30) return undefined;
  return { text: text.trim().toLowerCase(), startMinute: start, endMinute: end };
}

/** Whether `when` falls inside the window; windows may wrap past Saturday midnight. */
export function isInsideWindow(window: MaintenanceWindow, when: Date): boolean {
  const now = when.getUTCDay() * 24 * 60 + when.getUTCHours() * 60 + when.getUTCMinutes();
  const sinceStart = (now - window.startMinute + MINUTES_PER_WEEK) % MINUTES_PER_WEEK;
  const length = (window.endMinute - window.startMinute + MINUTES_PER_WEEK) % MINUTES_PER_WEEK;
  return sinceStart < length;
}

function minuteOfWeek(day: string, hours: string, minutes: string): number | undefined {
  const dayIndex = (DAYS as readonly string[]).indexOf(day);
  const h = Number(hours);
  const m = Number(minutes);
  if (dayIndex < 0 || h > 23 || m > 59) return undefined;
  return dayIndex * 24 * 60 + h * 60 + m;
}
