-- Searches ordered by last name with more than 10,000 matches read their
-- page below a bound (the last name of the first pass's page, see
-- store::users::page_by_last_name_below): one index that holds both the
-- last name and the trigrams answers "matches whose last name sorts before
-- the bound" without reading the users that do not match. It serves every
-- other search as the trigram index it replaces did. btree_gin is a trusted
-- contrib extension, as pg_trgm is.
create extension if not exists btree_gin;

create index users_last_name_search_idx on users using gin (last_name_key, search_key gin_trgm_ops);
drop index users_search_key_trgm_idx;
