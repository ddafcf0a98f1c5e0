-- Foundation: organizations, built-in profiles, users (core columns), API keys,
-- user access tokens and the audit trail. Every table is keyed by
-- organization_id so that a cross-organization reference cannot be stored.

-- Keeps update_time current on every UPDATE.
create function set_update_time() returns trigger language plpgsql as $$
begin
    new.update_time = now();
    return new;
end
$$;

-- One-off markers, e.g. that the zero-configuration bootstrap already ran.
create table roster_meta (
    key         text primary key,
    create_time timestamptz not null default now()
);

create table organizations (
    id                         uuid not null,
    name                       text not null,
    allow_duplicate_emails     boolean not null default false,
    public_email_domain_policy text not null default 'WARN',
    invitation_ttl_seconds     bigint not null default 604800,
    password_reset_ttl_seconds bigint not null default 3600,
    access_token_ttl_seconds   bigint not null default 28800,
    locale                     text not null default 'en',
    create_time                timestamptz not null default now(),
    update_time                timestamptz not null default now(),
    constraint organizations_pkey primary key (id),
    constraint organizations_public_email_domain_policy_check
        check (public_email_domain_policy in ('ALLOW', 'WARN', 'REJECT')),
    constraint organizations_ttls_check
        check (invitation_ttl_seconds > 0 and password_reset_ttl_seconds > 0 and access_token_ttl_seconds > 0),
    constraint organizations_locale_check check (locale in ('en', 'pt-BR'))
);
create unique index organizations_name_key on organizations (lower(name));
create trigger organizations_set_update_time before update on organizations
    for each row execute function set_update_time();

create table profiles (
    organization_id uuid not null references organizations (id) on delete cascade,
    id              uuid not null,
    product         text not null,
    name            text not null,
    description     text not null default '',
    -- Set only on the two built-in User Management profiles, which give rights in Roster.
    built_in        text,
    create_time     timestamptz not null default now(),
    update_time     timestamptz not null default now(),
    constraint profiles_pkey primary key (organization_id, id),
    constraint profiles_built_in_check check (built_in in ('ADMIN', 'VIEWER'))
);
create unique index profiles_org_product_name_key on profiles (organization_id, lower(product), lower(name));
create unique index profiles_org_built_in_key on profiles (organization_id, built_in) where built_in is not null;
create trigger profiles_set_update_time before update on profiles
    for each row execute function set_update_time();

create table users (
    organization_id        uuid not null references organizations (id) on delete cascade,
    id                     uuid not null,
    first_name             text not null,
    last_name              text not null,
    email                  text not null,
    username               text not null,
    phone                  text,
    external_id            text,
    -- What an administrator sets; the status shown is derived from it and onboarding.
    admin_state            text not null default 'ACTIVE',
    -- BLOCKED or DISABLED, carried over from a previous platform; never assigned otherwise.
    legacy_status          text,
    onboarded              boolean not null default false,
    password_hash          text,
    invitation_expire_time timestamptz,
    last_login_time        timestamptz,
    create_time            timestamptz not null default now(),
    update_time            timestamptz not null default now(),
    constraint users_pkey primary key (organization_id, id),
    constraint users_admin_state_check check (admin_state in ('ACTIVE', 'INACTIVE', 'ON_VACATION')),
    constraint users_legacy_status_check check (legacy_status in ('BLOCKED', 'DISABLED'))
);
create unique index users_org_username_key on users (organization_id, lower(username));
create index users_org_email_idx on users (organization_id, lower(email));
create unique index users_org_external_id_key on users (organization_id, external_id) where external_id is not null;
create trigger users_set_update_time before update on users
    for each row execute function set_update_time();

create table api_keys (
    organization_id uuid not null references organizations (id) on delete cascade,
    id              uuid not null,
    name            text not null,
    scopes          text[] not null,
    secret_hash     bytea not null,
    -- "api_key:<id>", "user:<id>" or "operator".
    created_by      text not null,
    request_id      text,
    create_time     timestamptz not null default now(),
    expire_time     timestamptz,
    last_used_time  timestamptz,
    revoke_time     timestamptz,
    constraint api_keys_pkey primary key (organization_id, id),
    constraint api_keys_secret_hash_key unique (secret_hash),
    constraint api_keys_scopes_check
        check (cardinality(scopes) > 0 and scopes <@ array['ADMIN', 'VIEWER']::text[])
);
create unique index api_keys_org_name_key on api_keys (organization_id, lower(name)) where revoke_time is null;
create unique index api_keys_org_request_id_key on api_keys (organization_id, request_id) where request_id is not null;
create index api_keys_org_create_time_idx on api_keys (organization_id, create_time desc, id desc);

create table access_tokens (
    organization_id uuid not null,
    id              uuid not null,
    user_id         uuid not null,
    token_hash      bytea not null,
    create_time     timestamptz not null default now(),
    expire_time     timestamptz not null,
    revoke_time     timestamptz,
    constraint access_tokens_pkey primary key (organization_id, id),
    constraint access_tokens_token_hash_key unique (token_hash),
    constraint access_tokens_user_fkey foreign key (organization_id, user_id)
        references users (organization_id, id) on delete cascade
);
create index access_tokens_user_idx on access_tokens (organization_id, user_id) where revoke_time is null;

create table audit_events (
    organization_id uuid not null references organizations (id) on delete cascade,
    -- UUIDv7: time-ordered, the tie-breaker of the newest-first order.
    id              uuid not null,
    actor_kind      text not null,
    actor_id        uuid,
    action          text not null,
    target_type     text not null,
    target_id       text not null,
    request_id      text not null default '',
    changed_fields  text[] not null default '{}',
    details         jsonb not null default '{}',
    create_time     timestamptz not null default now(),
    constraint audit_events_pkey primary key (organization_id, id),
    constraint audit_events_actor_kind_check check (actor_kind in ('API_KEY', 'USER', 'OPERATOR', 'SYSTEM'))
);
create index audit_events_org_time_idx on audit_events (organization_id, create_time desc, id desc);
create index audit_events_org_target_idx on audit_events (organization_id, target_id, create_time desc);
