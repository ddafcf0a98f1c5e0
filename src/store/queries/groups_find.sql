select g.id, g.name, g.description, g.profile_id, g.external_id,
       g.unit_scope as "unit_scope: ScopeKind",
       coalesce((select array_agg(gu.unit_id order by gu.unit_id) from group_units gu
                 where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as "unit_ids!",
       coalesce((select array_agg(u.name order by gu.unit_id) from group_units gu
                 join units u on u.organization_id = gu.organization_id and u.id = gu.unit_id
                 where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as "unit_names!",
       (select p.product from profiles p
        where p.organization_id = g.organization_id and p.id = g.profile_id) as "product!",
       (select p.name from profiles p
        where p.organization_id = g.organization_id and p.id = g.profile_id) as "profile_name!",
       (select count(*) from memberships m
        where m.organization_id = g.organization_id and m.group_id = g.id) as "member_count!",
       g.create_time, g.update_time
from groups g
where g.organization_id = $1 and g.id = $2
