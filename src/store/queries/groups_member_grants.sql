-- What the groups of the users in $2 grant, one row per (user, group).
select m.user_id, g.id, g.name, g.profile_id, g.unit_scope as "unit_scope: ScopeKind",
       p.built_in as "built_in: BuiltInRole",
       coalesce((select array_agg(gu.unit_id) from group_units gu
                 where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as "unit_ids!"
from groups g
join profiles p on p.organization_id = g.organization_id and p.id = g.profile_id
join memberships m on m.organization_id = g.organization_id and m.group_id = g.id
where g.organization_id = $1 and m.user_id = any($2)
