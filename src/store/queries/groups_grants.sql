-- What groups grant: those with the ids in $2, or every group when $2 is null.
select g.id, g.name, g.profile_id, g.unit_scope as "unit_scope: ScopeKind",
       p.built_in as "built_in: BuiltInRole",
       coalesce((select array_agg(gu.unit_id) from group_units gu
                 where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as "unit_ids!"
from groups g
join profiles p on p.organization_id = g.organization_id and p.id = g.profile_id
where g.organization_id = $1 and ($2::uuid[] is null or g.id = any($2))
