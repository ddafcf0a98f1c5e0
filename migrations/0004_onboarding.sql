-- Onboarding and sign-in: outbox delivery state, single-use invitation and
-- reset tokens (hash only), and sign-in throttling.

-- Delivery: a lease instead of a long lock, so a worker that dies frees its
-- claim; the Message-ID derives from the row's id, stable across retries.
alter table outbox
    add column next_attempt_time timestamptz not null default now(),
    add column lease_owner       uuid,
    add column lease_expire_time timestamptz,
    add column last_error        text,
    add column sent_time         timestamptz,
    -- IMPORT_REPORT: the job whose report goes to user_id (the requester).
    add column import_job_id     uuid,
    drop constraint outbox_kind_check,
    add constraint outbox_kind_check check (kind in ('INVITATION', 'PASSWORD_RESET', 'IMPORT_REPORT')),
    drop constraint outbox_status_check,
    -- SKIPPED: nothing to send any more (e.g. the user registered meanwhile).
    add constraint outbox_status_check check (status in ('PENDING', 'SENT', 'FAILED', 'SKIPPED'));
drop index outbox_pending_idx;
create index outbox_due_idx on outbox (next_attempt_time) where status = 'PENDING';
create index outbox_user_idx on outbox (organization_id, user_id);
-- Every delivery round looks for ended imports whose report is due.
create index import_jobs_report_pending_idx on import_jobs (id) where report_pending;

-- Links sent by email. Only the SHA-256 of the token is stored; a new token
-- of the same purpose revokes the previous one.
create table onboarding_tokens (
    organization_id uuid not null,
    id              uuid not null,
    user_id         uuid not null,
    purpose         text not null,
    token_hash      bytea not null,
    create_time     timestamptz not null default now(),
    expire_time     timestamptz not null,
    used_time       timestamptz,
    revoke_time     timestamptz,
    constraint onboarding_tokens_pkey primary key (organization_id, id),
    constraint onboarding_tokens_token_hash_key unique (token_hash),
    constraint onboarding_tokens_user_fkey foreign key (organization_id, user_id)
        references users (organization_id, id) on delete cascade,
    constraint onboarding_tokens_purpose_check check (purpose in ('INVITATION', 'PASSWORD_RESET'))
);
create index onboarding_tokens_live_idx on onboarding_tokens (organization_id, user_id, purpose)
    where used_time is null and revoke_time is null;

-- Failed sign-ins (and reset requests) per key: "user:<org>:<username>" and
-- "peer:<address>". Losing it in a crash only forgets recent failures, hence
-- unlogged.
create unlogged table sign_in_failures (
    key               text primary key,
    failures          integer not null,
    last_failure_time timestamptz not null,
    blocked_until     timestamptz
);
