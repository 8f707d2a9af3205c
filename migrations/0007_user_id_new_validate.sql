-- Phase 3 (tighten), step 2: scan the existing rows (SHARE UPDATE EXCLUSIVE: reads and writes go
-- on). Fails, changing nothing, while any row still has user_id_new NULL: backfill first.
-- dbops:only-in expandContract
-- Up Migration
ALTER TABLE conversations VALIDATE CONSTRAINT conversations_user_id_new_not_null;

-- Down Migration
-- Nothing to undo: an unvalidated constraint is dropped by the previous migration's down.
