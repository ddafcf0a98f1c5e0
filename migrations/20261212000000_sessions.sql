-- Every access token is a session an administrator can list and end: where
-- it was signed in from, with what client, and when it was last used
-- (written at most once a minute, like an API key's).
alter table access_tokens
    add column last_used_time timestamptz,
    add column peer_address   text,
    add column user_agent     text,
    add constraint access_tokens_user_agent_check check (char_length(user_agent) <= 256);

-- Sessions per user at most; a sign-in beyond it ends the oldest. Null: no limit.
alter table organizations
    add column max_sessions_per_user integer,
    add constraint organizations_max_sessions_per_user_check check (max_sessions_per_user > 0);

-- A recorded use (last_used_time) forgets nothing, as for API keys.
drop trigger access_tokens_notify_auth on access_tokens;
create trigger access_tokens_notify_auth_update after update on access_tokens
    for each row
    when ((old.expire_time, old.revoke_time, old.token_hash)
          is distinct from (new.expire_time, new.revoke_time, new.token_hash))
    execute function notify_auth_change('token', 'token_hash');
create trigger access_tokens_notify_auth_delete after delete on access_tokens
    for each row execute function notify_auth_change('token', 'token_hash');
