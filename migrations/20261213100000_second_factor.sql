-- A second factor (TOTP, RFC 6238): a user's seed, encrypted under the
-- server's secret key (AES-256-GCM: a 12-byte nonce, then the sealed seed;
-- the user's ids are its associated data, so a copied row does not open for
-- another user). Unconfirmed until a first code proves the authenticator
-- has it; `last_step` is the newest time step used, so a code is used once.
create table second_factors (
    organization_id   uuid not null,
    user_id           uuid not null,
    sealed_secret     bytea not null,
    create_time       timestamptz not null default now(),
    confirm_time      timestamptz,
    last_step         bigint,
    constraint second_factors_pkey primary key (organization_id, user_id),
    constraint second_factors_user_fkey foreign key (organization_id, user_id)
        references users (organization_id, id) on delete cascade
);

-- The ten single-use recovery codes shown once at enrollment, kept as the
-- SHA-256 of the user's id and the code (80 random bits: no offline guessing).
create table recovery_codes (
    organization_id uuid not null,
    user_id         uuid not null,
    code_hash       bytea not null,
    used_time       timestamptz,
    constraint recovery_codes_pkey primary key (organization_id, user_id, code_hash),
    constraint recovery_codes_user_fkey foreign key (organization_id, user_id)
        references users (organization_id, id) on delete cascade
);

-- A password that proved who a user with a second factor is: CompleteLogin
-- takes the challenge (kept as its SHA-256) with a code, once, shortly.
create table login_challenges (
    organization_id uuid not null,
    id              uuid not null,
    user_id         uuid not null,
    challenge_hash  bytea not null,
    create_time     timestamptz not null default now(),
    expire_time     timestamptz not null,
    used_time       timestamptz,
    constraint login_challenges_pkey primary key (organization_id, id),
    constraint login_challenges_challenge_hash_key unique (challenge_hash),
    constraint login_challenges_user_fkey foreign key (organization_id, user_id)
        references users (organization_id, id) on delete cascade
);
create index login_challenges_expire_idx on login_challenges (expire_time);

-- Under it, a user without a second factor enrolls one with their password.
alter table organizations
    add column require_second_factor boolean not null default false;
