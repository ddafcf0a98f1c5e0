-- The id an identity provider gives a group (SCIM `externalId`, issue 18;
-- Entra ID sends one). Unique in the organization when set, as users' are.
alter table groups add column external_id text;
create unique index groups_org_external_id_key on groups (organization_id, external_id) where external_id is not null;
