/**
 * Backfills the fault worker may run: the counting `counter` fixture (backfill cells) and the
 * backfill phase of each declared change (the expandContract cells run user-id-bigint).
 */
import { changeBackfills, CHANGES } from '../../activities/postgres/changes';
import { counter } from '../fixtures/backfills/counter';

export const FAULT_BACKFILLS = { counter, ...changeBackfills(CHANGES) };
