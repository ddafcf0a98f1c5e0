-- Review (ValidateImport) jobs keep their row results for a retention period
-- only: a sweep in every server deletes them and records when, while the job
-- and its counts stay.
alter table import_jobs add column row_results_expired_time timestamptz;
create index import_jobs_review_retention_idx on import_jobs (end_time)
    where kind = 'VALIDATE' and row_results_expired_time is null and end_time is not null;
