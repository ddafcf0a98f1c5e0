-- Bulk import: durable jobs, a result for every data row, and the in-file
-- duplicate claims of running jobs.

create table import_jobs (
    organization_id  uuid not null references organizations (id) on delete cascade,
    id               uuid not null,
    kind             text not null,
    status           text not null default 'RUNNING',
    -- The ImportOptions as given (group ids, mirror user, on_existing, ...).
    options          jsonb not null,
    file_name        text not null default '',
    -- "api_key:<id>" or "user:<id>".
    requested_by     text not null,
    notify_requester boolean not null,
    -- The process running the job and its last sign of life; a stale
    -- heartbeat lets any server end the job INTERRUPTED.
    owner            uuid not null,
    heartbeat_time   timestamptz not null default now(),
    cancel_requested boolean not null default false,
    rows_total       bigint not null default 0,
    created          bigint not null default 0,
    updated          bigint not null default 0,
    deleted          bigint not null default 0,
    unchanged        bigint not null default 0,
    skipped          bigint not null default 0,
    valid            bigint not null default 0,
    failed           bigint not null default 0,
    bytes_received   bigint not null default 0,
    last_line        bigint not null default 0,
    failure_message  text not null default '',
    -- Set when the job ends and notify_requester holds: the report email still to send.
    report_pending   boolean not null default false,
    create_time      timestamptz not null default now(),
    update_time      timestamptz not null default now(),
    end_time         timestamptz,
    constraint import_jobs_pkey primary key (organization_id, id),
    constraint import_jobs_id_key unique (id),
    constraint import_jobs_kind_check check (kind in ('VALIDATE', 'IMPORT')),
    constraint import_jobs_status_check
        check (status in ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'INTERRUPTED'))
);
create index import_jobs_org_create_time_idx on import_jobs (organization_id, create_time desc, id desc);
create index import_jobs_running_idx on import_jobs (heartbeat_time) where status = 'RUNNING';
create trigger import_jobs_set_update_time before update on import_jobs
    for each row execute function set_update_time();

-- One row per data row, written in the transaction that decides it.
create table import_rows (
    job_id   uuid not null references import_jobs (id) on delete cascade,
    line     bigint not null,
    action   text not null,
    email    text not null default '',
    outcome  text not null,
    user_id  uuid,
    -- [{"field", "code", "message"}]
    errors   jsonb,
    warnings jsonb,
    constraint import_rows_pkey primary key (job_id, line),
    constraint import_rows_action_check check (action in ('ADD', 'UPDATE', 'DELETE', 'UNSPECIFIED')),
    constraint import_rows_outcome_check
        check (outcome in ('CREATED', 'UPDATED', 'DELETED', 'UNCHANGED', 'SKIPPED', 'VALID', 'FAILED'))
);
create index import_rows_failed_idx on import_rows (job_id, line) where outcome = 'FAILED';

-- The email, username, external id and user each successful row of a running
-- job claimed, so that a later row with the same value fails naming the first
-- line. Only a running job needs them (a crash ends the job), hence unlogged;
-- they are dropped when the job ends.
create unlogged table import_claims (
    job_id uuid not null,
    key    text not null,
    line   bigint not null,
    constraint import_claims_pkey primary key (job_id, key)
);
