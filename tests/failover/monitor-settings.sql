-- pg_auto_failover's monitor, tuned for a short write outage (defaults in
-- brackets): a health check every second [5 s] that gives up after 1 s
-- [5 s], retried once [2 times] after 0.5 s [2 s]; a primary that fails its
-- checks for 3 s [20 s] is unhealthy, and the monitor waits at most 5 s
-- [30 s] for it to demote itself before promoting the standby. The price:
-- a primary that stalls for a few seconds (a long checkpoint, a saturated
-- disk) can be failed over although it would have come back.
alter system set pgautofailover.health_check_period to 1000;
alter system set pgautofailover.health_check_timeout to 1000;
alter system set pgautofailover.health_check_max_retries to 1;
alter system set pgautofailover.health_check_retry_delay to 500;
alter system set pgautofailover.node_considered_unhealthy_timeout to 3000;
alter system set pgautofailover.primary_demote_timeout to 5000;
select pg_reload_conf();
