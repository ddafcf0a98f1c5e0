-- Custom user attributes (issue 19 point 6). An organization defines them;
-- users carry their values in one jsonb object keyed by the attribute's key,
-- typed as JSON (string, number, boolean; a date as `YYYY-MM-DD`), so a user
-- reads back whole in one row and ListUsers' filter is a containment
-- (`attributes @> '{"key": value}'`) the GIN index answers.
create table user_attribute_definitions (
    organization_id uuid not null references organizations (id) on delete cascade,
    key             text not null,
    value_type      text not null,
    -- Allowed values, typed like the values; empty: any value of the type.
    allowed_values  jsonb not null default '[]',
    required        boolean not null default false,
    description     text not null default '',
    create_time     timestamptz not null default now(),
    update_time     timestamptz not null default now(),
    constraint user_attribute_definitions_pkey primary key (organization_id, key),
    constraint user_attribute_definitions_key_check check (key ~ '^[a-z][a-z0-9_]{0,39}$'),
    constraint user_attribute_definitions_value_type_check
        check (value_type in ('STRING', 'NUMBER', 'BOOLEAN', 'DATE')),
    constraint user_attribute_definitions_allowed_values_check
        check (jsonb_typeof(allowed_values) = 'array')
);
create trigger user_attribute_definitions_set_update_time before update on user_attribute_definitions
    for each row execute function set_update_time();

alter table users
    add column attributes jsonb not null default '{}',
    add constraint users_attributes_check check (jsonb_typeof(attributes) = 'object');
create index users_attributes_idx on users using gin (attributes jsonb_path_ops);
