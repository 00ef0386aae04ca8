-- rebound store, schema 16: the complaint-rate guard. A campaign whose complaint rate
-- passed [rules] max_complaint_rate is paused (`paused_at`, `pause_reason`): none of
-- its sends is claimed until `rebound send` or a resume clears it. The guard then
-- counts from `resumed_at`.
ALTER TABLE campaigns ADD COLUMN paused_at BIGINT;
ALTER TABLE campaigns ADD COLUMN pause_reason TEXT;
ALTER TABLE campaigns ADD COLUMN resumed_at BIGINT;
