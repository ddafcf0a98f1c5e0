-- The change stream of WatchChanges: one row per committed change, numbered
-- per organization in commit order without gaps.
--
-- Why a counter row and not a sequence: numbers a sequence hands out before
-- commit reach readers out of commit order (a reader following `> last`
-- would skip a change still committing behind a later one). A transaction
-- takes its organization's counter row last, just before it commits, and
-- holds its lock until the commit is visible; the next writer of the same
-- organization numbers its changes only after that. So positions become
-- visible in order, a rolled-back transaction leaves no hole, and a reader
-- can tell from a hole that what it wanted was pruned.
create table change_counters (
    organization_id uuid primary key,
    last_position bigint not null
);

create table changes (
    organization_id uuid not null,
    position bigint not null,
    kind text not null,
    operation text not null,
    resource_id text not null,
    action text not null,
    changed_fields text[] not null,
    actor_kind text not null,
    actor_id uuid,
    request_id text not null,
    -- Membership changes: the groups given or taken.
    group_ids uuid[] not null default '{}',
    commit_time timestamptz not null,
    primary key (organization_id, position)
);

-- The retention sweep deletes by age.
create index changes_commit_time on changes (commit_time);
