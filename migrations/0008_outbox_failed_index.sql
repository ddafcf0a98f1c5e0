-- The metrics count the emails delivery gave up on at every scrape: a
-- partial index keeps that count off the (growing) sent rows.
create index outbox_failed_idx on outbox (create_time) where status = 'FAILED';
