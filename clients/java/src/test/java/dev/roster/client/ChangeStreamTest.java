package dev.roster.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import dev.roster.v1.Change;
import dev.roster.v1.ChangeKind;
import dev.roster.v1.ChangeServiceGrpc;
import dev.roster.v1.Heartbeat;
import dev.roster.v1.WatchChangesRequest;
import dev.roster.v1.WatchChangesResponse;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.ForwardingServerCall;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * ChangeStream against a scripted WatchChanges server on loopback: what it asks for when it
 * reconnects, and which errors end it. Needs no Roster server (the end-to-end behaviour is in
 * EndToEndTest).
 */
@Timeout(30)
class ChangeStreamTest {
  /** Fast retries: the backoff's arithmetic is not what these tests are about. */
  private static final WatchOptions FAST =
      WatchOptions.defaults().withBackoff(Duration.ofMillis(1), Duration.ofMillis(5));

  /** What each successive call does with its request. */
  private final BlockingQueue<BiConsumer<WatchChangesRequest, StreamObserver<WatchChangesResponse>>>
      script = new LinkedBlockingQueue<>();

  private final List<WatchChangesRequest> requests = new CopyOnWriteArrayList<>();
  private Server server;
  private Roster roster;

  /** The call's headers, sent when the script starts unless it says when ({@link #answer()}). */
  private static final Context.Key<Runnable> ANSWER = Context.key("answer");

  /** Whether the next calls answer (send headers) only when their script calls answer(). */
  private volatile boolean scriptAnswers;

  @BeforeEach
  void start() throws IOException {
    var service =
        new ChangeServiceGrpc.ChangeServiceImplBase() {
          @Override
          public void watchChanges(
              WatchChangesRequest request, StreamObserver<WatchChangesResponse> out) {
            requests.add(request);
            if (!scriptAnswers) {
              answer();
            }
            var next = script.poll();
            if (next == null) {
              out.onError(
                  Status.INTERNAL.withDescription("not in the script").asRuntimeException());
            } else {
              next.accept(request, out);
            }
          }
        };
    server =
        Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create())
            .addService(ServerInterceptors.intercept(service, new HeadersFirst()))
            .build()
            .start();
    roster = Roster.connect("localhost:" + server.getPort(), "rst_key_test", true);
  }

  static void answer() {
    ANSWER.get().run();
  }

  /**
   * Lets the handler send the headers before any message, as Roster (tonic) does once it has
   * taken the stream's position; grpc-java would send them with the first message only.
   */
  static final class HeadersFirst implements ServerInterceptor {
    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(
        ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
      var once =
          new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
            private boolean sent;

            @Override
            public synchronized void sendHeaders(Metadata headers) {
              if (!sent) {
                sent = true;
                super.sendHeaders(headers);
              }
            }
          };
      Context context = Context.current().withValue(ANSWER, () -> once.sendHeaders(new Metadata()));
      return Contexts.interceptCall(context, once, headers, next);
    }
  }

  @AfterEach
  void stop() throws InterruptedException {
    roster.close();
    server.shutdownNow().awaitTermination();
  }

  static WatchChangesResponse change(String cursor) {
    return WatchChangesResponse.newBuilder()
        .setChange(Change.newBuilder().setCursor(cursor).setResourceId("user-" + cursor))
        .build();
  }

  static WatchChangesResponse heartbeat(String cursor) {
    return WatchChangesResponse.newBuilder()
        .setHeartbeat(Heartbeat.newBuilder().setCursor(cursor))
        .build();
  }

  /** Sends these, then fails the call with {@code end} or, when null, leaves it open. */
  static BiConsumer<WatchChangesRequest, StreamObserver<WatchChangesResponse>> sends(
      Status end, WatchChangesResponse... responses) {
    return (request, out) -> {
      for (WatchChangesResponse response : responses) {
        out.onNext(response);
      }
      if (end == Status.OK) {
        out.onCompleted();
      } else if (end != null) {
        out.onError(end.asRuntimeException());
      }
    };
  }

  @Test
  void aDroppedStreamResumesAfterTheLastCursorAHeartbeatIncluded() {
    script.add(sends(Status.UNAVAILABLE.withDescription("dropped"), change("c1"), heartbeat("h1")));
    script.add(sends(null, change("c2")));
    WatchOptions options = FAST.withKinds(ChangeKind.CHANGE_KIND_USER).withUserIds("u1");
    try (ChangeStream changes = roster.watch(WatchStart.now(), options)) {
      assertNull(changes.cursor());
      assertEquals("c1", changes.next().getCursor());
      assertEquals("c1", changes.cursor());
      assertEquals("c2", changes.next().getCursor(), "heartbeats are not returned");
      assertEquals("c2", changes.cursor());
    }
    assertEquals(2, requests.size());
    assertEquals(WatchChangesRequest.StartCase.START_NOT_SET, requests.get(0).getStartCase());
    assertEquals("h1", requests.get(1).getAfterCursor());
    for (WatchChangesRequest request : requests) {
      assertEquals(List.of(ChangeKind.CHANGE_KIND_USER), request.getKindsList());
      assertEquals(List.of("u1"), request.getUserIdsList());
    }
  }

  @Test
  void watchReturnsOnceTheServerAnsweredSoAStreamFromNowMissesNothingAfter() {
    scriptAnswers = true;
    script.add(
        (request, out) -> {
          sleep(300); // Taking its position.
          answer();
          out.onNext(change("c1"));
        });
    long started = System.nanoTime();
    try (ChangeStream changes = roster.watch(WatchStart.now(), FAST)) {
      long waited = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
      assertTrue(waited >= 300, "watch() returned after " + waited + " ms");
      assertEquals("c1", changes.next().getCursor());
    }
  }

  static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      throw new IllegalStateException(e);
    }
  }

  @Test
  void aConnectionSilentForTheIdleTimeoutIsDroppedAndResumed() {
    script.add(sends(null, heartbeat("h1"))); // Then nothing: a peer gone without a word.
    script.add(sends(null, change("c1")));
    try (ChangeStream changes =
        roster.watch(WatchStart.now(), FAST.withIdleTimeout(Duration.ofMillis(300)))) {
      assertEquals("c1", changes.next().getCursor());
    }
    assertEquals(2, requests.size());
    assertEquals("h1", requests.get(1).getAfterCursor());
  }

  @Test
  void aSlowReaderIsNotTakenForASilentConnection() {
    script.add(sends(null, change("c1"), change("c2"), change("c3")));
    try (ChangeStream changes =
        roster.watch(WatchStart.now(), FAST.withIdleTimeout(Duration.ofMillis(100)))) {
      assertEquals("c1", changes.next().getCursor());
      sleep(500); // Busy with c1: the rest wait (a cancelled call would drop them).
      assertEquals("c2", changes.next().getCursor());
      assertEquals("c3", changes.next().getCursor());
    }
    assertEquals(1, requests.size());
  }

  @Test
  void aWatchOpenedInAContextThatEndsOutlivesIt() {
    script.add(sends(Status.UNAVAILABLE));
    script.add(sends(null, change("c1")));
    // As while serving a request, which then ends (the reader still runs in its context).
    Context.CancellableContext request = Context.current().withCancellation();
    Context previous = request.attach();
    try (ChangeStream changes = roster.watch(WatchStart.now(), FAST)) {
      request.cancel(null);
      assertEquals("c1", changes.next().getCursor());
    } finally {
      request.detach(previous);
    }
    assertEquals(2, requests.size());
  }

  @Test
  void theServerEndingTheStreamIsADropToo() {
    script.add(sends(Status.OK, change("c1")));
    script.add(sends(null, change("c2")));
    try (ChangeStream changes = roster.watch(WatchStart.after("c0"), FAST)) {
      assertEquals("c1", changes.next().getCursor());
      assertEquals("c2", changes.next().getCursor());
    }
    assertEquals("c0", requests.get(0).getAfterCursor());
    assertEquals("c1", requests.get(1).getAfterCursor());
  }

  @Test
  void itRetriesUntilTheServerAnswersFromWhereItWasAskedWhileItHasNoCursor() {
    for (int i = 0; i < 3; i++) {
      script.add(sends(Status.UNAVAILABLE));
    }
    script.add(sends(null, change("c1")));
    try (ChangeStream changes = roster.watch(WatchStart.beginning(), FAST)) {
      assertEquals("c1", changes.next().getCursor());
    }
    assertEquals(4, requests.size());
    assertTrue(
        requests.stream().allMatch(WatchChangesRequest::getFromBeginning), requests.toString());
  }

  @Test
  void outOfRangeEndsTheStreamAndSaysToResynchronize() {
    script.add(sends(Status.OUT_OF_RANGE.withDescription("after_cursor is older than 7 days")));
    ChangeStream changes = roster.watch(WatchStart.after("old"), FAST);
    var error = assertThrows(StatusRuntimeException.class, changes::hasNext);
    assertEquals(Status.Code.OUT_OF_RANGE, error.getStatus().getCode());
    String message = error.getStatus().getDescription();
    assertTrue(message.startsWith("after_cursor is older than 7 days: "), message);
    assertTrue(message.contains("resynchronize"), message);
    assertTrue(message.contains("WatchStart.now()"), message);
    assertFalse(changes.hasNext(), "the stream is closed");
    assertEquals(1, requests.size(), "not retried");
  }

  @Test
  void invalidArgumentEndsTheStreamWithTheServersFieldViolations() {
    BadRequest violations =
        BadRequest.newBuilder()
            .addFieldViolations(
                BadRequest.FieldViolation.newBuilder()
                    .setField("after_cursor")
                    .setDescription("is not a cursor"))
            .build();
    script.add(
        (request, out) ->
            out.onError(
                StatusProto.toStatusRuntimeException(
                    com.google.rpc.Status.newBuilder()
                        .setCode(Status.Code.INVALID_ARGUMENT.value())
                        .setMessage("after_cursor is not a cursor")
                        .addDetails(Any.pack(violations))
                        .build())));
    ChangeStream changes = roster.watch(WatchStart.after("garbage"), FAST);
    var error = assertThrows(StatusRuntimeException.class, changes::hasNext);
    assertEquals(Status.Code.INVALID_ARGUMENT, error.getStatus().getCode());
    assertEquals(violations, Roster.badRequest(error).orElseThrow());
    assertEquals(1, requests.size(), "not retried");
  }

  @Test
  void whatANewCallMayNotMeetIsRetried() {
    List<Status> failures =
        List.of(
            Status.UNAVAILABLE,
            Status.RESOURCE_EXHAUSTED,
            Status.ABORTED,
            Status.INTERNAL,
            Status.UNKNOWN,
            Status.DEADLINE_EXCEEDED,
            Status.CANCELLED);
    for (Status failure : failures) {
      script.add(sends(failure));
    }
    script.add(sends(null, change("c1")));
    try (ChangeStream changes = roster.watch(WatchStart.now(), FAST)) {
      assertEquals("c1", changes.next().getCursor());
    }
    assertEquals(failures.size() + 1, requests.size());
  }

  @Test
  void answersEveryRetryWouldRepeatAreNotRetried() {
    List<Status> answers =
        List.of(
            Status.UNAUTHENTICATED,
            Status.PERMISSION_DENIED,
            Status.UNIMPLEMENTED,
            Status.FAILED_PRECONDITION,
            Status.NOT_FOUND);
    for (Status status : answers) {
      requests.clear();
      script.add(sends(status));
      ChangeStream changes = roster.watch(WatchStart.now(), FAST);
      var error = assertThrows(StatusRuntimeException.class, changes::next);
      assertEquals(status.getCode(), error.getStatus().getCode());
      assertEquals(1, requests.size(), status + " is not retried");
    }
  }

  @Test
  void closeFromAnotherThreadCancelsTheCallAndEndsABlockedRead() throws Exception {
    CountDownLatch cancelled = new CountDownLatch(1);
    script.add(
        (request, out) -> {
          var call = (ServerCallStreamObserver<WatchChangesResponse>) out;
          call.setOnCancelHandler(cancelled::countDown);
          out.onNext(change("c1"));
        });
    ChangeStream changes = roster.watch(WatchStart.now(), FAST);
    assertEquals("c1", changes.next().getCursor());
    CompletableFuture<Boolean> more = CompletableFuture.supplyAsync(changes::hasNext);
    Thread.sleep(200); // Blocked in hasNext(), waiting for a change that never comes.
    assertFalse(more.isDone());
    changes.close();
    assertFalse(more.get(5, TimeUnit.SECONDS));
    assertTrue(cancelled.await(5, TimeUnit.SECONDS), "the server saw the call cancelled");
    assertEquals(1, requests.size(), "no reconnection after close");
  }

  @Test
  void interruptingTheReaderEndsTheStreamWithCancelled() throws Exception {
    script.add(sends(null));
    ChangeStream changes = roster.watch(WatchStart.now(), FAST);
    CompletableFuture<Throwable> thrown = new CompletableFuture<>();
    Thread reader =
        new Thread(
            () -> {
              try {
                changes.hasNext();
                thrown.complete(null);
              } catch (Throwable e) {
                thrown.complete(e);
              }
            });
    reader.start();
    Thread.sleep(200);
    reader.interrupt();
    var error = (StatusRuntimeException) thrown.get(5, TimeUnit.SECONDS);
    assertEquals(Status.Code.CANCELLED, error.getStatus().getCode());
    assertFalse(changes.hasNext(), "the stream is closed");
    assertEquals(1, requests.size());
  }

  @Test
  void closeEndsTheWaitBeforeAReconnection() throws Exception {
    script.add(sends(Status.UNAVAILABLE));
    ChangeStream changes =
        roster.watch(
            WatchStart.now(),
            WatchOptions.defaults().withBackoff(Duration.ofMinutes(1), Duration.ofMinutes(1)));
    CompletableFuture<Boolean> more = CompletableFuture.supplyAsync(changes::hasNext);
    Thread.sleep(200);
    changes.close();
    assertFalse(more.get(5, TimeUnit.SECONDS));
    assertEquals(1, requests.size());
  }

  @Test
  void badStartsAndOptionsAreRefusedBeforeAnyCall() {
    assertThrows(IllegalArgumentException.class, () -> WatchStart.after(""));
    assertThrows(NullPointerException.class, () -> WatchStart.after(null));
    assertThrows(
        IllegalArgumentException.class,
        () -> WatchOptions.defaults().withKinds(ChangeKind.CHANGE_KIND_UNSPECIFIED));
    assertThrows(IllegalArgumentException.class, () -> WatchOptions.defaults().withUserIds(""));
    assertThrows(
        IllegalArgumentException.class,
        () -> WatchOptions.defaults().withBackoff(Duration.ofSeconds(2), Duration.ofSeconds(1)));
    assertThrows(
        IllegalArgumentException.class,
        () -> WatchOptions.defaults().withBackoff(Duration.ZERO, Duration.ofSeconds(1)));
    assertThrows(
        IllegalArgumentException.class,
        () -> WatchOptions.defaults().withIdleTimeout(Duration.ofSeconds(-1)));
  }
}
