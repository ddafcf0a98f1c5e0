-- What the groups named in $2 grant, each name matched ignoring case as group
-- names are unique (groups_org_name_key), with the 1-based position of the
-- name that found it.
select n.position as "position!", g.id, g.name, g.profile_id,
       g.unit_scope as "unit_scope: ScopeKind",
       p.built_in as "built_in: BuiltInRole",
       coalesce((select array_agg(gu.unit_id) from group_units gu
                 where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as "unit_ids!"
from unnest($2::text[]) with ordinality as n(name, position)
join groups g on g.organization_id = $1 and lower(g.name) = lower(n.name)
join profiles p on p.organization_id = g.organization_id and p.id = g.profile_id
