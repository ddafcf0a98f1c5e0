-- A password expires at the time an administrator set (SetPasswordExpiry),
-- or once it is older than the organization's password_max_age, whichever
-- comes first; a new password clears the first and restarts the second.
alter table users
    add column password_set_time    timestamptz,
    add column password_expire_time timestamptz;
-- Passwords set before this migration are as old as it; their users' rows
-- did not change otherwise (update_time stays).
alter table users disable trigger users_set_update_time;
update users set password_set_time = now() where password_hash is not null;
alter table users enable trigger users_set_update_time;

-- Null: passwords do not age out.
alter table organizations
    add column password_max_age_seconds bigint,
    add constraint organizations_password_max_age_check check (password_max_age_seconds > 0);
