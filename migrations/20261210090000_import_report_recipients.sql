-- ImportOptions.report_to: users of the organization, by email, who also get
-- an import's report (an import by an API key has no requester to tell).
alter table import_jobs add column report_to text[] not null default '{}';
