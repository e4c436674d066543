-- The tasks a worker has that the server will not give it runs of (its
-- build's argument schema differs, or the server has no such task), with
-- why, as a JSON array of {title, reason}, for the Workers page.
ALTER TABLE workers ADD COLUMN refused TEXT NOT NULL DEFAULT '[]';
