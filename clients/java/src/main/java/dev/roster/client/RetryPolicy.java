package dev.roster.client;

import java.time.Duration;

/**
 * How the retrying calls of {@link Roster} ({@link Roster#createUser} and the other creates,
 * {@link Roster#retrying}) retry; set with {@link Roster#withRetryPolicy(RetryPolicy)}.
 * Immutable: each {@code with…} returns a copy.
 *
 * <pre>{@code
 * RetryPolicy patiently = RetryPolicy.defaults().withBudget(Duration.ofMinutes(2));
 * Roster patient = roster.withRetryPolicy(patiently);
 * }</pre>
 *
 * @param initialBackoff the longest wait before the first retry when the server gave no {@code
 *     RetryInfo}; it doubles with each failed attempt, up to {@code maxBackoff}, half of it
 *     random
 * @param maxBackoff the cap of that wait
 * @param attemptTimeout each attempt's deadline: an attempt that has no answer by then ends
 *     {@code DEADLINE_EXCEEDED} (its outcome unknown) and is retried
 * @param budget how long from the first attempt all of them may take: no attempt runs past it
 *     (its deadline is cut to what is left) and no retry starts with less than 100 ms of it left
 *     (or the attempt timeout, if shorter); the last error is then thrown. A deadline of the
 *     caller's {@link io.grpc.Context} shortens it
 */
public record RetryPolicy(
    Duration initialBackoff, Duration maxBackoff, Duration attemptTimeout, Duration budget) {
  private static final RetryPolicy DEFAULTS =
      new RetryPolicy(
          Duration.ofMillis(100),
          Duration.ofSeconds(5),
          Duration.ofSeconds(10),
          Duration.ofSeconds(30));

  public RetryPolicy {
    Timing.requireBackoff(initialBackoff, maxBackoff);
    Timing.requirePositive(attemptTimeout, "attemptTimeout");
    Timing.requirePositive(budget, "budget");
  }

  /**
   * Waits from 100 ms doubling up to 5 s (or what the server's {@code RetryInfo} says), 10 s per
   * attempt, 30 s in all: a PostgreSQL failover (about 10 s of {@code UNAVAILABLE}) is ridden
   * out.
   */
  public static RetryPolicy defaults() {
    return DEFAULTS;
  }

  public RetryPolicy withBackoff(Duration initial, Duration max) {
    return new RetryPolicy(initial, max, attemptTimeout, budget);
  }

  public RetryPolicy withAttemptTimeout(Duration attemptTimeout) {
    return new RetryPolicy(initialBackoff, maxBackoff, attemptTimeout, budget);
  }

  public RetryPolicy withBudget(Duration budget) {
    return new RetryPolicy(initialBackoff, maxBackoff, attemptTimeout, budget);
  }
}
