-- How emails name an organization ("Acme Corporation" for `acme`, whose
-- name is what people type at sign-in). Empty: emails use the name.
alter table organizations
    add column display_name text not null default '',
    add constraint organizations_display_name_check check (char_length(display_name) <= 100);
