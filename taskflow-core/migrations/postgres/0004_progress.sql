-- How far a run's current (or last) attempt has come, as the worker last
-- stored it (with a lease renewal or the attempt's outcome): both NULL
-- until it reports any, and again when a new attempt starts.
ALTER TABLE taskflow_runs ADD COLUMN progress_done bigint, ADD COLUMN progress_total bigint;
