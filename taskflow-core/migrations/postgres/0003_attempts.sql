-- Every ended attempt of a run (number, worker, executor, start, end,
-- outcome, error) as a JSON array beside the run: a retried run keeps the
-- record of each attempt before the last. NULL for none, as every run
-- stored before this migration has.
ALTER TABLE taskflow_runs ADD COLUMN attempts json;
