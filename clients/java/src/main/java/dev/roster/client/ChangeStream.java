package dev.roster.client;

import dev.roster.v1.Change;
import dev.roster.v1.ChangeServiceGrpc;
import dev.roster.v1.WatchChangesRequest;
import dev.roster.v1.WatchChangesResponse;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.Context;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.logging.Logger;

/**
 * The organization's changes in commit order, from {@link Roster#watch(WatchStart, WatchOptions)}:
 * a blocking iterator over one {@code WatchChanges} stream that outlives dropped connections.
 *
 * <pre>{@code
 * try (ChangeStream changes = roster.watch(WatchStart.after(savedCursor))) {
 *   for (Change change : changes) {   // blocks until the next change commits
 *     cache.apply(change);            // change.getUserAccess() on USER and MEMBERSHIP changes
 *     savedCursor = change.getCursor();
 *   }
 * } catch (StatusRuntimeException e) {
 *   if (e.getStatus().getCode() == Status.Code.OUT_OF_RANGE) {
 *     // The cursor is older than the retained window: list again, then watch from now.
 *   }
 * }
 * }</pre>
 *
 * <p>{@link #hasNext()} blocks until a change arrives. Heartbeats are not returned: they only move
 * {@link #cursor()}. When the connection drops, the call fails in a way a new one may not ({@code
 * UNAVAILABLE}, {@code RESOURCE_EXHAUSTED}, {@code ABORTED}, {@code INTERNAL}, {@code UNKNOWN},
 * {@code DEADLINE_EXCEEDED}, {@code CANCELLED} by a server or proxy), the server ends the stream,
 * or nothing (not even a heartbeat) arrives for {@link WatchOptions#idleTimeout()} while
 * it waits, the stream reconnects after the last cursor received (of a change or a heartbeat), so
 * every change is returned exactly once and in order; the waits between attempts grow
 * exponentially with jitter, up to {@link WatchOptions#maxBackoff()}, and start again from the
 * shortest once a message arrives. It retries for as long as it is open. Until the first change
 * or heartbeat the stream has no cursor: a reconnection then starts again from where it was
 * asked to (from {@link WatchStart#now()}, changes committed meanwhile are not sent).
 *
 * <p>Errors a retry cannot fix end the stream: {@code hasNext()} throws the {@link
 * StatusRuntimeException} (with the server's details, see {@link Roster#badRequest}) and the
 * stream is closed. {@code OUT_OF_RANGE}: the cursor is older than the retained window, the
 * caller must resynchronize (read again what it keeps, then watch from {@link WatchStart#now()});
 * {@code INVALID_ARGUMENT}: a cursor that is not one, or a bad filter; {@code UNAUTHENTICATED}:
 * the key was revoked or the user's token can no longer sign in; {@code PERMISSION_DENIED}; any
 * other code ({@code UNIMPLEMENTED}: a server without WatchChanges). Interrupting the reading thread ends the stream with {@code CANCELLED}.
 *
 * <p>Read it from one thread. {@link #close()} may be called from any thread: it cancels the call
 * and a blocked {@code hasNext()} returns {@code false}. The stream is its own iterator: {@link
 * #iterator()} returns it, so a second loop continues where the first stopped.
 */
public final class ChangeStream implements Iterator<Change>, Iterable<Change>, AutoCloseable {
  private static final Logger LOG = Logger.getLogger(ChangeStream.class.getName());

  private final ChangeServiceGrpc.ChangeServiceBlockingStub stub;
  private final WatchStart from;
  private final WatchOptions options;
  private final CountDownLatch closing = new CountDownLatch(1);

  /**
   * The caller's context at watch(), forked: its values travel with each call, but its
   * cancellation or deadline (a watch opened while serving a request) does not end the stream.
   */
  private final Context base = Context.current().fork();

  private final Object lock = new Object();
  /** The current call's context, cancelled by close(); guarded by lock. */
  private Context.CancellableContext call;

  /** Where the stream stands: the last change returned or heartbeat received. */
  private volatile String cursor;

  /**
   * When the reader began waiting for a message (System.nanoTime()), 0 while it is not: only a
   * waiting reader has asked the server for one, so only then does silence mean a dead
   * connection (a slow reader holds the server back without being idle).
   */
  private volatile long waitingSince;
  /** The watchdog cancelled the call: reconnect rather than end. */
  private volatile boolean silenced;
  private final ScheduledFuture<?> watchdog;

  // The reading thread's own.
  private Iterator<WatchChangesResponse> responses;
  private Change pending;
  private int failedAttempts;

  ChangeStream(
      ChangeServiceGrpc.ChangeServiceBlockingStub stub, WatchStart from, WatchOptions options) {
    this.stub = stub;
    this.from = from;
    this.options = options;
    long period = Math.max(options.idleTimeout().toMillis() / 4, 10);
    this.watchdog =
        Timing.TIMER.scheduleWithFixedDelay(
            this::dropIfSilent, period, period, TimeUnit.MILLISECONDS);
    awaitAnswer(open());
  }

  /**
   * The cursor to resume from with {@link WatchStart#after(String)}: that of the last change
   * {@link #next()} returned, or of a later heartbeat; {@code null} before either.
   */
  public String cursor() {
    return cursor;
  }

  /**
   * Whether a change came, waiting for it; {@code false} once the stream is closed.
   *
   * @throws StatusRuntimeException an error a retry cannot fix (the stream is then closed)
   */
  @Override
  public boolean hasNext() {
    while (pending == null && !isClosed()) {
      if (responses == null && open() == null) {
        break;
      }
      try {
        if (!awaitMessage()) {
          reconnectAfter(Status.UNAVAILABLE.withDescription("the server ended the stream"));
          continue;
        }
        WatchChangesResponse response = responses.next();
        failedAttempts = 0;
        switch (response.getEventCase()) {
          case CHANGE -> pending = response.getChange();
          case HEARTBEAT -> {
            if (!response.getHeartbeat().getCursor().isEmpty()) {
              cursor = response.getHeartbeat().getCursor();
            }
          }
          default -> {} // An event this client does not know yet.
        }
      } catch (StatusRuntimeException e) {
        if (isClosed()) {
          break;
        }
        if (silenced) {
          reconnectAfter(
              Status.UNAVAILABLE.withDescription(
                  "nothing received for " + options.idleTimeout() + ", not even a heartbeat"));
          continue;
        }
        if (!retryable(e.getStatus())) {
          close();
          throw unrecoverable(e);
        }
        reconnectAfter(e.getStatus());
      }
    }
    return pending != null && !isClosed();
  }

  /**
   * Whether a new call may not meet the failure (the connection, the server's load or restart, a
   * proxy between), as opposed to an answer every retry would repeat (OUT_OF_RANGE,
   * INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED, …). CANCELLED that the
   * stream did not cause comes from the server or a proxy, unless the reader was interrupted.
   */
  private static boolean retryable(Status status) {
    return switch (status.getCode()) {
      case UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNKNOWN, DEADLINE_EXCEEDED -> true;
      case CANCELLED -> !Thread.currentThread().isInterrupted();
      default -> false;
    };
  }

  /** Whether the call has another message, waiting for it under the watchdog's eye. */
  private boolean awaitMessage() {
    waitingSince = System.nanoTime() | 1; // Never 0, which means not waiting.
    try {
      return responses.hasNext();
    } finally {
      waitingSince = 0;
    }
  }

  /** Cancels the call when the reader has waited longer than the idle timeout. */
  private void dropIfSilent() {
    long since = waitingSince;
    if (since == 0 || System.nanoTime() - since < options.idleTimeout().toNanos()) {
      return;
    }
    synchronized (lock) {
      if (!isClosed() && call != null && !silenced) {
        silenced = true;
        call.cancel(null);
      }
    }
  }

  /** The next change, waiting for it. */
  @Override
  public Change next() {
    if (!hasNext()) {
      throw new NoSuchElementException("the change stream is closed");
    }
    Change change = pending;
    pending = null;
    cursor = change.getCursor();
    return change;
  }

  /** This stream: iterating again continues where the last loop stopped. */
  @Override
  public Iterator<Change> iterator() {
    return this;
  }

  /** Cancels the call; a {@code hasNext()} blocked in another thread returns {@code false}. */
  @Override
  public void close() {
    synchronized (lock) {
      if (isClosed()) {
        return;
      }
      closing.countDown();
      watchdog.cancel(false);
      if (call != null) {
        call.cancel(null);
      }
    }
  }

  private boolean isClosed() {
    return closing.getCount() == 0;
  }

  /**
   * Waits until the server answered the call (its headers, or its end): the server takes its
   * position before it answers, so a stream from now then misses nothing committed after. A
   * server silent for the idle timeout is left to the watchdog.
   */
  private void awaitAnswer(CompletableFuture<Void> answered) {
    try {
      answered.get(options.idleTimeout().toMillis(), TimeUnit.MILLISECONDS);
    } catch (TimeoutException e) {
      LOG.info(() -> "watch: the server has not answered in " + options.idleTimeout());
    } catch (ExecutionException e) {
      throw new IllegalStateException(e); // Never completed exceptionally.
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      close();
      throw Status.CANCELLED
          .withDescription("interrupted while waiting for the server to answer")
          .withCause(e)
          .asRuntimeException();
    }
  }

  /**
   * Starts a call after the cursor, or from the start asked for; the future completes when the
   * server answers. Returns null once closed.
   */
  private CompletableFuture<Void> open() {
    WatchChangesRequest.Builder request =
        WatchChangesRequest.newBuilder()
            .addAllKinds(options.kinds())
            .addAllUserIds(options.userIds());
    String at = cursor;
    if (at != null) {
      request.setAfterCursor(at);
    } else {
      from.applyTo(request);
    }
    Context.CancellableContext context;
    synchronized (lock) {
      if (isClosed()) {
        return null;
      }
      if (call != null) {
        call.cancel(null);
      }
      silenced = false; // Whatever the watchdog did, it did to the call that ended.
      context = base.withCancellation();
      call = context;
    }
    CompletableFuture<Void> answered = new CompletableFuture<>();
    Context previous = context.attach();
    try {
      responses = stub.withInterceptors(new Answered(answered)).watchChanges(request.build());
    } finally {
      context.detach(previous);
    }
    return answered;
  }

  /** Completes a future when the call gets its headers or ends, whichever comes first. */
  private record Answered(CompletableFuture<Void> answered) implements ClientInterceptor {
    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(
        MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          super.start(
              new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
                @Override
                public void onHeaders(Metadata headers) {
                  answered.complete(null);
                  super.onHeaders(headers);
                }

                @Override
                public void onClose(Status status, Metadata trailers) {
                  answered.complete(null);
                  super.onClose(status, trailers);
                }
              },
              headers);
        }
      };
    }
  }

  /** Waits the backoff, then lets hasNext() open a new call after the cursor. */
  private void reconnectAfter(Status status) {
    responses = null;
    long delay =
        Timing.jitteredMillis(options.initialBackoff(), options.maxBackoff(), failedAttempts);
    failedAttempts++;
    LOG.info(
        () ->
            String.format(
                "watch stream dropped (%s: %s); reconnecting in %d ms after cursor %s",
                status.getCode(), status.getDescription(), delay, cursor));
    try {
      closing.await(delay, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      close();
      throw Status.CANCELLED
          .withDescription("interrupted while waiting to reconnect")
          .withCause(e)
          .asRuntimeException();
    }
  }

  /** The error as thrown to the caller; OUT_OF_RANGE says what to do. */
  private static StatusRuntimeException unrecoverable(StatusRuntimeException error) {
    Status status = error.getStatus();
    if (status.getCode() != Status.Code.OUT_OF_RANGE) {
      return error;
    }
    String said = status.getDescription() == null ? "" : status.getDescription() + ": ";
    return new StatusRuntimeException(
        status
            .withDescription(
                said
                    + "the cursor is older than the changes the server retains; resynchronize:"
                    + " read again what you keep (ListUsers, GetUserAccess, …), then watch from"
                    + " WatchStart.now()")
            .withCause(error),
        error.getTrailers());
  }
}
