-- A request_id belongs to the caller who sent it (an API key or a user), as
-- payment APIs scope idempotency keys to the account: a replay by another
-- caller of the same organization must not receive the first result.

-- "api_key:<id>", "user:<id>" or "operator", as api_keys.created_by.
alter table idempotent_requests add column caller text not null default '';

-- Keep earlier keys working for the caller who created the resource; a key
-- whose creator cannot be found keeps '' and is never replayed again.
update idempotent_requests i
   set caller = lower(a.actor_kind) || ':' || a.actor_id
  from audit_events a
 where a.organization_id = i.organization_id
   and a.target_id = i.resource_id::text
   and a.action in ('user.create', 'group.create', 'unit.create', 'profile.create')
   and a.actor_id is not null;

alter table idempotent_requests
    alter column caller drop default,
    drop constraint idempotent_requests_pkey,
    add constraint idempotent_requests_pkey primary key (organization_id, caller, operation, request_id);

drop index api_keys_org_request_id_key;
create unique index api_keys_org_creator_request_id_key
    on api_keys (organization_id, created_by, request_id) where request_id is not null;
