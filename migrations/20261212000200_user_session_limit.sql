-- A user's own session limit, over the organization's max_sessions_per_user:
-- null follows the organization, 0 is no limit.
alter table users
    add column max_sessions integer,
    add constraint users_max_sessions_check check (max_sessions >= 0);
