-- The directory: units, groups (a profile on some units), memberships, the
-- invitation outbox, idempotent creates, and what search needs on users.

create extension if not exists pg_trgm;

-- Search and ordering keys are folded in Rust (lowercase, accents removed),
-- the same folding as the validator's, so no locale-dependent unaccent.
alter table users
    add column search_key    text not null default '',
    add column last_name_key text not null default '',
    -- False for users created while the organization allowed duplicate emails.
    add column email_unique  boolean not null default true;
create unique index users_org_email_key on users (organization_id, lower(email)) where email_unique;
create index users_search_key_trgm_idx on users using gin (search_key gin_trgm_ops);
create index users_org_create_time_idx on users (organization_id, create_time desc, id desc);
create index users_org_last_name_idx on users (organization_id, last_name_key, id);

create table units (
    organization_id uuid not null references organizations (id) on delete cascade,
    id              uuid not null,
    name            text not null,
    kind            text not null,
    create_time     timestamptz not null default now(),
    update_time     timestamptz not null default now(),
    constraint units_pkey primary key (organization_id, id),
    constraint units_kind_check check (kind in ('BRANCH', 'STORE', 'PARTNER', 'OTHER'))
);
create unique index units_org_name_key on units (organization_id, lower(name));
create trigger units_set_update_time before update on units
    for each row execute function set_update_time();

create table groups (
    organization_id uuid not null references organizations (id) on delete cascade,
    id              uuid not null,
    name            text not null,
    description     text not null default '',
    profile_id      uuid not null,
    unit_scope      text not null,
    create_time     timestamptz not null default now(),
    update_time     timestamptz not null default now(),
    constraint groups_pkey primary key (organization_id, id),
    constraint groups_profile_fkey foreign key (organization_id, profile_id)
        references profiles (organization_id, id) on delete restrict,
    constraint groups_unit_scope_check check (unit_scope in ('NO_UNIT', 'ALL_UNITS', 'UNITS')),
    constraint groups_name_check check (position('|' in name) = 0)
);
create unique index groups_org_name_key on groups (organization_id, lower(name));
create index groups_org_profile_idx on groups (organization_id, profile_id);
create trigger groups_set_update_time before update on groups
    for each row execute function set_update_time();

-- The units of a group whose scope is UNITS.
create table group_units (
    organization_id uuid not null,
    group_id        uuid not null,
    unit_id         uuid not null,
    constraint group_units_pkey primary key (organization_id, group_id, unit_id),
    constraint group_units_group_fkey foreign key (organization_id, group_id)
        references groups (organization_id, id) on delete cascade,
    constraint group_units_unit_fkey foreign key (organization_id, unit_id)
        references units (organization_id, id) on delete restrict
);
create index group_units_unit_idx on group_units (organization_id, unit_id);

create table memberships (
    organization_id uuid not null,
    user_id         uuid not null,
    group_id        uuid not null,
    create_time     timestamptz not null default now(),
    constraint memberships_pkey primary key (organization_id, user_id, group_id),
    constraint memberships_user_fkey foreign key (organization_id, user_id)
        references users (organization_id, id) on delete cascade,
    constraint memberships_group_fkey foreign key (organization_id, group_id)
        references groups (organization_id, id) on delete cascade
);
create index memberships_group_idx on memberships (organization_id, group_id, user_id);

-- What to send, never a secret: the delivery worker creates the token when it sends.
create table outbox (
    organization_id uuid not null,
    id              uuid not null,
    kind            text not null,
    user_id         uuid not null,
    status          text not null default 'PENDING',
    attempts        integer not null default 0,
    create_time     timestamptz not null default now(),
    constraint outbox_pkey primary key (organization_id, id),
    constraint outbox_user_fkey foreign key (organization_id, user_id)
        references users (organization_id, id) on delete cascade,
    constraint outbox_kind_check check (kind in ('INVITATION', 'PASSWORD_RESET')),
    constraint outbox_status_check check (status in ('PENDING', 'SENT', 'FAILED'))
);
create index outbox_pending_idx on outbox (create_time) where status = 'PENDING';

-- First results of create calls that carried a request_id, so a retry returns them.
create table idempotent_requests (
    organization_id uuid not null references organizations (id) on delete cascade,
    operation       text not null,
    request_id      text not null,
    resource_id     uuid not null,
    response        jsonb not null default '{}',
    create_time     timestamptz not null default now(),
    constraint idempotent_requests_pkey primary key (organization_id, operation, request_id)
);
