package dev.roster.client;

import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;

/** The client's waits: the streams' reconnections and the retried calls share them. */
final class Timing {
  /** The watch streams' watchdogs and the attempts' deadlines; one daemon thread for all. */
  static final ScheduledExecutorService TIMER =
      Executors.newSingleThreadScheduledExecutor(
          task -> {
            Thread thread = new Thread(task, "roster-client-timer");
            thread.setDaemon(true);
            return thread;
          });

  private Timing() {}

  /**
   * The wait after {@code failedAttempts} failures in a row: {@code initial} doubling with each,
   * capped at {@code max}; half of it fixed, half random, so clients cut off together do not all
   * come back at once.
   */
  static long jitteredMillis(Duration initial, Duration max, int failedAttempts) {
    long ceiling = Math.min(max.toMillis(), initial.toMillis() << Math.min(failedAttempts, 20));
    return ceiling / 2 + ThreadLocalRandom.current().nextLong(ceiling / 2 + 1);
  }

  /** Refuses a backoff whose waits are not positive or whose cap is below its start. */
  static void requireBackoff(Duration initial, Duration max) {
    requirePositive(initial, "initialBackoff");
    requirePositive(max, "maxBackoff");
    if (max.compareTo(initial) < 0) {
      throw new IllegalArgumentException("maxBackoff must be at least initialBackoff");
    }
  }

  static void requirePositive(Duration duration, String name) {
    Objects.requireNonNull(duration, name);
    if (duration.isNegative() || duration.isZero()) {
      throw new IllegalArgumentException(name + " must be positive");
    }
  }
}
