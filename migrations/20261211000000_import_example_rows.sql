-- The template's example row (action `example`) is recorded as such. The
-- new check admits every value the old one did: added NOT VALID and then
-- validated, so existing rows are checked without blocking writers.
alter table import_rows drop constraint import_rows_action_check;
alter table import_rows add constraint import_rows_action_check
    check (action in ('ADD', 'UPDATE', 'DELETE', 'EXAMPLE', 'UNSPECIFIED')) not valid;
alter table import_rows validate constraint import_rows_action_check;
