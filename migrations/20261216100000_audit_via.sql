-- no-transaction
-- The door a change came through (gRPC, SCIM, the password pages, the
-- command line, Roster itself): one API key may write over gRPC and over
-- SCIM, and the trail should tell an identity provider's changes apart.
--
-- Null for events recorded before this column, and for those a replica of
-- the previous release inserts during a rolling upgrade. Adding a nullable
-- column without a default rewrites nothing, and the check is added NOT
-- VALID (no scan under the ACCESS EXCLUSIVE lock); it is validated in a
-- transaction of its own, which takes only a SHARE UPDATE EXCLUSIVE lock.
begin;
alter table audit_events add column if not exists via text;
alter table audit_events drop constraint if exists audit_events_via_check;
alter table audit_events add constraint audit_events_via_check
    check (via in ('GRPC', 'SCIM', 'PAGES', 'CLI', 'SYSTEM')) not valid;
commit;

begin;
alter table audit_events validate constraint audit_events_via_check;
commit;
