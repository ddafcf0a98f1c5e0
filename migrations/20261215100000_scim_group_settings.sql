-- SCIM settings of an organization (issue 18). A group an identity provider
-- creates over SCIM is a Roster group, so it needs a profile: the default
-- one is `scim_default_profile_id` (a profile of the organization; deleting
-- the profile clears the setting). Users created over SCIM get an invitation
-- email unless `scim_send_invitations` is off (providers often onboard
-- people themselves).
alter table organizations
    add column scim_default_profile_id uuid,
    add column scim_send_invitations boolean not null default true,
    add constraint organizations_scim_default_profile_fkey
        foreign key (id, scim_default_profile_id) references profiles (organization_id, id)
        on delete set null (scim_default_profile_id);
