-- Every server keeps the credentials and the user access it authenticated in
-- memory; these triggers tell all of them, on commit, what to forget. The
-- triggers catch every writer (calls, imports, the CLI, an operator's psql).
-- Payload: "<kind>:<organization id>:<what>", with kind
--   key    an API key changed or went; <what> is its secret hash in hex
--   token  an access token changed or went; <what> is its hash in hex
--   user   a user's status, email or groups changed, or the user went
--   org    a group, its units or a profile changed: every user of the organization
--   all    a table was truncated: everything
create function notify_auth_change() returns trigger language plpgsql as $$
declare
    changed jsonb := to_jsonb(case when tg_op = 'DELETE' then old else new end);
    what text := changed ->> tg_argv[1];
begin
    if tg_argv[1] in ('secret_hash', 'token_hash') then
        -- A bytea reads "\x<hex>" as JSON text.
        what := substr(what, 3);
    end if;
    perform pg_notify('roster_auth_changes',
        tg_argv[0] || ':' || (changed ->> 'organization_id') || ':' || what);
    return null;
end
$$;

create function notify_auth_truncate() returns trigger language plpgsql as $$
begin
    perform pg_notify('roster_auth_changes', 'all::');
    return null;
end
$$;

-- A recorded use (last_used_time) forgets nothing.
create trigger api_keys_notify_auth_update after update on api_keys
    for each row
    when ((old.scopes, old.expire_time, old.revoke_time, old.secret_hash)
          is distinct from (new.scopes, new.expire_time, new.revoke_time, new.secret_hash))
    execute function notify_auth_change('key', 'secret_hash');
create trigger api_keys_notify_auth_delete after delete on api_keys
    for each row execute function notify_auth_change('key', 'secret_hash');
create trigger access_tokens_notify_auth after update or delete on access_tokens
    for each row execute function notify_auth_change('token', 'token_hash');
-- Only what authentication reads: a login's last_login_time or a new name forget nothing.
create trigger users_notify_auth_update after update on users
    for each row
    when ((old.admin_state, old.legacy_status, old.onboarded, old.email)
          is distinct from (new.admin_state, new.legacy_status, new.onboarded, new.email))
    execute function notify_auth_change('user', 'id');
create trigger users_notify_auth_delete after delete on users
    for each row execute function notify_auth_change('user', 'id');
create trigger groups_notify_auth after update or delete on groups
    for each row execute function notify_auth_change('org', 'id');
create trigger group_units_notify_auth after insert or update or delete on group_units
    for each row execute function notify_auth_change('org', 'group_id');
create trigger profiles_notify_auth after update or delete on profiles
    for each row execute function notify_auth_change('org', 'id');

create trigger api_keys_notify_auth_truncate after truncate on api_keys
    for each statement execute function notify_auth_truncate();
create trigger access_tokens_notify_auth_truncate after truncate on access_tokens
    for each statement execute function notify_auth_truncate();
create trigger users_notify_auth_truncate after truncate on users
    for each statement execute function notify_auth_truncate();
create trigger memberships_notify_auth_truncate after truncate on memberships
    for each statement execute function notify_auth_truncate();
create trigger groups_notify_auth_truncate after truncate on groups
    for each statement execute function notify_auth_truncate();

-- Memberships notify per statement: one notification per user it touched,
-- or one per organization when it touched many (an import or a seed), so a
-- 100,000-row import costs one notification, not 100,000.
create function notify_membership_users(pairs text[]) returns void language plpgsql as $$
begin
    if cardinality(pairs) > 100 then
        perform pg_notify('roster_auth_changes', 'org:' || organization_id || ':')
        from (select distinct split_part(pair, ':', 1) as organization_id
              from unnest(pairs) as pair) as organizations;
    else
        perform pg_notify('roster_auth_changes', 'user:' || pair) from unnest(pairs) as pair;
    end if;
end
$$;

create function notify_membership_change() returns trigger language plpgsql as $$
begin
    -- Each trigger sees only its own transition tables; the other branches never run.
    if tg_op = 'INSERT' then
        perform notify_membership_users(array(
            select distinct organization_id || ':' || user_id from added));
    elsif tg_op = 'DELETE' then
        perform notify_membership_users(array(
            select distinct organization_id || ':' || user_id from removed));
    else
        perform notify_membership_users(array(
            select organization_id || ':' || user_id from added
            union select organization_id || ':' || user_id from removed));
    end if;
    return null;
end
$$;

create trigger memberships_notify_auth_insert after insert on memberships
    referencing new table as added
    for each statement execute function notify_membership_change();
create trigger memberships_notify_auth_update after update on memberships
    referencing new table as added old table as removed
    for each statement execute function notify_membership_change();
create trigger memberships_notify_auth_delete after delete on memberships
    referencing old table as removed
    for each statement execute function notify_membership_change();
