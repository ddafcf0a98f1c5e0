-- A link token with what redeeming it needs: its user and organization.
select t.organization_id, t.id, t.user_id, t.purpose as "purpose: LinkPurpose", t.expire_time, t.used_time, t.revoke_time,
       o.name as organization_name, o.locale as organization_locale, users.username, users.onboarded
  from onboarding_tokens t
  join users on users.organization_id = t.organization_id and users.id = t.user_id
  join organizations o on o.id = t.organization_id
 where t.token_hash = $1
   for update of t, users
