-- Sign-in throttling in the spirit of smart lockout (spec §2): failures
-- counted apart for familiar and other addresses, a repeated wrong password
-- counted once, budgets reserved before the password check; and password
-- reset requests queued as typed, resolved by the delivery worker, so that
-- asking costs the same whatever exists.

-- sign_in_failures (0004), keyed by the typed text, is no longer used: an
-- over-long username broke its index row. It is NOT dropped here: a replica
-- still running the previous release reads it on every Login during a
-- rolling upgrade. A later release drops it, once no replica of the
-- previous one can run.

-- Server-side keys, created once per database (so every replica shares them).
-- `sign_in` keys the HMAC-SHA-256 digests below. The key lives in this same
-- database: the digests hide the typed text only from someone who reads a
-- table without this one. A reader of the whole database (a dump, a backup)
-- has the key and tests guesses offline at HMAC speed (billions a second):
-- the addresses of budgets and of accounts' familiar addresses (kept 90
-- days), by enumerating all of IPv4 or a guessed IPv6 range's /64 prefixes;
-- a username tried lately (existing or not) for any guessed name; and the
-- wrong passwords typed lately (up to 15 minutes, often near-misses of the
-- real password) for any dictionary. It is only a keyed digest, not a
-- password hash: protect dumps of this database like the password hashes.
create table server_secrets (
    name   text primary key,
    secret bytea not null
);
-- gen_random_uuid draws from the server's strong random source: 244 random bits.
insert into server_secrets (name, secret)
values ('sign_in', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

-- One budget per key: an account's familiar or other addresses, or a peer.
-- `in_flight` counts attempts that reserved budget and are being checked.
-- Losing it in a crash only forgets recent failures, hence unlogged.
create unlogged table sign_in_throttle (
    key               bytea primary key,
    failures          integer not null default 0,
    last_failure_time timestamptz,
    blocked_until     timestamptz,
    in_flight         integer not null default 0,
    reserve_time      timestamptz,
    constraint sign_in_throttle_key_check check (octet_length(key) = 32)
);

-- Wrong passwords seen lately per account (a keyed digest, never the
-- password): the same one again is not counted again.
create unlogged table sign_in_wrong_passwords (
    digest    bytea primary key,
    seen_time timestamptz not null,
    constraint sign_in_wrong_passwords_digest_check check (octet_length(digest) = 32)
);
create index sign_in_wrong_passwords_seen_idx on sign_in_wrong_passwords (seen_time);

-- Addresses an account signed in from successfully: its familiar addresses.
create table sign_in_familiar_addresses (
    account_key       bytea not null,
    address_key       bytea not null,
    last_success_time timestamptz not null,
    constraint sign_in_familiar_addresses_pkey primary key (account_key, address_key)
);
create index sign_in_familiar_addresses_age_idx on sign_in_familiar_addresses (last_success_time);

-- RequestPasswordReset as typed (bounded before it gets here); the delivery
-- worker turns each into a reset email when it names an onboarded user.
create table password_reset_requests (
    id           uuid primary key,
    organization text not null,
    username     text not null,
    create_time  timestamptz not null default now(),
    constraint password_reset_requests_length_check
        check (length(organization) <= 400 and length(username) <= 1016)
);
