select m.user_id, g.id as group_id, g.name as group_name, p.id as profile_id, p.product,
       p.name as profile_name, g.unit_scope as "unit_scope: ScopeKind",
       p.built_in as "built_in: BuiltInRole",
       coalesce((select array_agg(gu.unit_id order by gu.unit_id) from group_units gu
                 where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as "unit_ids!",
       coalesce((select array_agg(u.name order by gu.unit_id) from group_units gu
                 join units u on u.organization_id = gu.organization_id and u.id = gu.unit_id
                 where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as "unit_names!"
from memberships m
join groups g on g.organization_id = m.organization_id and g.id = m.group_id
join profiles p on p.organization_id = g.organization_id and p.id = g.profile_id
where m.organization_id = $1 and m.user_id = any($2)
order by m.user_id, p.product, p.name, g.name
