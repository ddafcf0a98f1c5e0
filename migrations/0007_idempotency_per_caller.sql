-- no-transaction
-- A request_id belongs to the caller who sent it (an API key or a user), as
-- payment APIs scope idempotency keys to the account: a replay by another
-- caller of the same organization must not receive the first result.
--
-- Rolling upgrade: replicas of the previous release keep running while this
-- runs and insert without `caller`, so the column keeps `default ''` (their
-- keys are then never replayed to anyone else). A later release, once no
-- replica of the previous one is left, drops the default.
--
-- Three transactions, each safe to run again, so the backfill (a join over
-- audit_events) holds only row locks: the ACCESS EXCLUSIVE lock of an ALTER
-- taken in the same transaction would block every request until commit.

-- "api_key:<id>", "user:<id>" or "operator", as api_keys.created_by.
begin;
alter table idempotent_requests add column if not exists caller text not null default '';
commit;

-- Keep earlier keys working for the caller who created the resource; a key
-- whose creator cannot be found keeps '' and is never replayed again.
begin;
update idempotent_requests i
   set caller = lower(a.actor_kind) || ':' || a.actor_id
  from audit_events a
 where i.caller = ''
   and a.organization_id = i.organization_id
   and a.target_id = i.resource_id::text
   and a.action in ('user.create', 'group.create', 'unit.create', 'profile.create')
   and a.actor_id is not null;
commit;

begin;
alter table idempotent_requests
    drop constraint idempotent_requests_pkey,
    add constraint idempotent_requests_pkey primary key (organization_id, caller, operation, request_id);

drop index if exists api_keys_org_request_id_key;
create unique index if not exists api_keys_org_creator_request_id_key
    on api_keys (organization_id, created_by, request_id) where request_id is not null;
commit;
