package dev.roster.client;

import com.google.protobuf.Descriptors.FieldDescriptor;
import com.google.protobuf.Message;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.logging.Logger;

/** The retry loop of {@link Roster#retrying} and of the creates, and their request ids. */
final class Retries {
  private static final Logger LOG = Logger.getLogger(Retries.class.getName());

  /** The server's answer to a twin of a create still running: retry, it returns the first. */
  static final String REQUEST_IN_PROGRESS = "REQUEST_IN_PROGRESS";

  static final String ERROR_DOMAIN = "roster";

  private static final Duration MAX_HINT = Duration.ofDays(1);

  /**
   * The least of the budget a retry must have left after its wait: a shorter attempt could only
   * end DEADLINE_EXCEEDED, which would hide the answer before it.
   */
  static final Duration MIN_ATTEMPT = Duration.ofMillis(100);

  private Retries() {}

  /** {@code request} with a fresh UUID in its {@code request_id} field when that is empty. */
  static <M extends Message> M withRequestId(M request) {
    FieldDescriptor field = request.getDescriptorForType().findFieldByName("request_id");
    if (field == null || field.getType() != FieldDescriptor.Type.STRING) {
      throw new IllegalArgumentException(
          request.getDescriptorForType().getName() + " has no request_id: it is not a create");
    }
    if (!((String) request.getField(field)).isEmpty()) {
      return request;
    }
    @SuppressWarnings("unchecked") // toBuilder() of an M builds an M.
    M identified =
        (M) request.toBuilder().setField(field, UUID.randomUUID().toString()).build();
    return identified;
  }

  /**
   * Runs {@code attempt} until it returns, an error no retry may cure is thrown, or the policy's
   * budget ends (the last error is thrown). Each attempt runs in a context with its deadline.
   */
  static <T> T call(RetryPolicy policy, String what, Supplier<T> attempt) {
    long budget = policy.budget().toNanos();
    Deadline outer = Context.current().getDeadline();
    if (outer != null) {
      budget = Math.min(budget, outer.timeRemaining(TimeUnit.NANOSECONDS));
    }
    long end = System.nanoTime() + budget;
    for (int failed = 0; ; failed++) {
      long left = end - System.nanoTime();
      long timeout = Math.max(1, Math.min(policy.attemptTimeout().toNanos(), left));
      try {
        return attemptWithin(timeout, attempt);
      } catch (StatusRuntimeException error) {
        Optional<Duration> hint = Roster.detail(error, RetryInfo.class).map(Retries::delay);
        if (!retryable(error, hint.isPresent())) {
          throw error;
        }
        int failures = failed;
        long wait = hint.map(Retries::jittered).orElseGet(() -> backoff(policy, failures));
        long shortest = Math.min(MIN_ATTEMPT.toNanos(), policy.attemptTimeout().toNanos());
        if (System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(wait) + shortest > end) {
          throw error;
        }
        Status status = error.getStatus();
        LOG.info(
            () ->
                String.format(
                    "%s failed (%s: %s), attempt %d; retrying in %d ms",
                    what, status.getCode(), status.getDescription(), failures + 1, wait));
        sleep(wait, what, error);
      }
    }
  }

  private static <T> T attemptWithin(long timeoutNanos, Supplier<T> attempt) {
    Context.CancellableContext context =
        Context.current().withDeadlineAfter(timeoutNanos, TimeUnit.NANOSECONDS, Timing.TIMER);
    Context previous = context.attach();
    try {
      return attempt.get();
    } finally {
      context.detach(previous);
      context.cancel(null); // Frees its deadline's timer.
    }
  }

  /**
   * Whether a new attempt may meet another answer, without doing twice what the first did: the
   * server or the connection is down ({@code UNAVAILABLE}), the outcome is unknown ({@code
   * DEADLINE_EXCEEDED}: the request id makes the retry return the first result, if there was
   * one), the server asks to come back later ({@code RESOURCE_EXHAUSTED} with a {@code
   * RetryInfo}; without one it is a quota, which waiting does not restore), or a twin of this
   * create is still running ({@code ALREADY_EXISTS} {@code REQUEST_IN_PROGRESS}).
   */
  static boolean retryable(StatusRuntimeException error, boolean hasRetryInfo) {
    return switch (error.getStatus().getCode()) {
      case UNAVAILABLE, DEADLINE_EXCEEDED -> true;
      case RESOURCE_EXHAUSTED -> hasRetryInfo;
      case ALREADY_EXISTS ->
          Roster.detail(error, ErrorInfo.class)
              .filter(
                  info ->
                      REQUEST_IN_PROGRESS.equals(info.getReason())
                          && ERROR_DOMAIN.equals(info.getDomain()))
              .isPresent();
      default -> false;
    };
  }

  /** The delay the server asked for, within [0, 1 day]: the budget decides about long ones. */
  private static Duration delay(RetryInfo info) {
    var delay = info.getRetryDelay();
    Duration asked =
        Duration.ofSeconds(Math.min(Math.max(delay.getSeconds(), 0), MAX_HINT.getSeconds()))
            .plusNanos(Math.max(delay.getNanos(), 0));
    return asked.compareTo(MAX_HINT) > 0 ? MAX_HINT : asked;
  }

  /** The server's delay and up to a tenth more, so clients it refused together spread out. */
  private static long jittered(Duration delay) {
    long millis = delay.toMillis();
    return millis + ThreadLocalRandom.current().nextLong(millis / 10 + 1);
  }

  private static long backoff(RetryPolicy policy, int failed) {
    return Timing.jitteredMillis(policy.initialBackoff(), policy.maxBackoff(), failed);
  }

  private static void sleep(long millis, String what, StatusRuntimeException last) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      StatusRuntimeException cancelled =
          Status.CANCELLED
              .withDescription("interrupted while waiting to retry " + what)
              .withCause(e)
              .asRuntimeException();
      cancelled.addSuppressed(last);
      throw cancelled;
    }
  }
}
