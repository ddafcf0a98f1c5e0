package dev.roster.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.protobuf.Message;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.roster.v1.ApiKey;
import dev.roster.v1.AuthServiceGrpc;
import dev.roster.v1.CloneUserRequest;
import dev.roster.v1.CloneUserResponse;
import dev.roster.v1.CreateApiKeyRequest;
import dev.roster.v1.CreateApiKeyResponse;
import dev.roster.v1.CreateGroupRequest;
import dev.roster.v1.CreateGroupResponse;
import dev.roster.v1.CreateProfileRequest;
import dev.roster.v1.CreateProfileResponse;
import dev.roster.v1.CreateUnitRequest;
import dev.roster.v1.CreateUnitResponse;
import dev.roster.v1.CreateUserRequest;
import dev.roster.v1.CreateUserResponse;
import dev.roster.v1.GetUserRequest;
import dev.roster.v1.GetUserResponse;
import dev.roster.v1.GroupServiceGrpc;
import dev.roster.v1.User;
import dev.roster.v1.UserServiceGrpc;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The retrying creates and {@link Roster#retrying} against scripted Roster services on loopback:
 * what each attempt sends, which answers are retried, and how long the retries wait and last.
 * Needs no Roster server (EndToEndTest has the real one return the first user to a retry).
 */
@Timeout(30)
class RetryTest {
  /** Fast retries: most tests are not about the backoff's arithmetic. */
  private static final RetryPolicy FAST =
      RetryPolicy.defaults().withBackoff(Duration.ofMillis(1), Duration.ofMillis(5));

  /** What each successive call does; calls past the end of the script are answered. */
  private final BlockingQueue<Step> script = new LinkedBlockingQueue<>();

  private final List<Message> requests = new CopyOnWriteArrayList<>();
  /** When each request arrived (System.nanoTime()). */
  private final List<Long> arrivals = new CopyOnWriteArrayList<>();
  /** The time each call had left when it arrived, in ms (-1: no deadline). */
  private final List<Long> deadlines = new CopyOnWriteArrayList<>();

  private Server server;
  private Roster roster;

  /** A call's fate: answered, failed with {@code error}, or left without an answer. */
  record Step(StatusRuntimeException error, boolean hang) {
    static final Step ANSWER = new Step(null, false);
    static final Step HANG = new Step(null, true);

    static Step fail(Status status) {
      return new Step(status.asRuntimeException(), false);
    }

    static Step fail(StatusRuntimeException error) {
      return new Step(error, false);
    }
  }

  @BeforeEach
  void start() throws IOException {
    server =
        Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create())
            .addService(new Users())
            .addService(new Groups())
            .addService(new Auth())
            .build()
            .start();
    roster =
        Roster.connect("localhost:" + server.getPort(), "rst_key_test", true).withRetryPolicy(FAST);
  }

  @AfterEach
  void stop() throws InterruptedException {
    roster.close();
    server.shutdownNow().awaitTermination();
  }

  /** Records the request, then does what the script says, answering {@code answer}. */
  private <R> void serve(Message request, StreamObserver<R> out, Supplier<R> answer) {
    requests.add(request);
    arrivals.add(System.nanoTime());
    Deadline deadline = Context.current().getDeadline();
    deadlines.add(deadline == null ? -1 : deadline.timeRemaining(TimeUnit.MILLISECONDS));
    Step step = script.poll();
    if (step == null) {
      step = Step.ANSWER;
    }
    if (step.hang()) {
      return; // As a server whose database hangs: only the client's deadline ends the call.
    }
    if (step.error() != null) {
      out.onError(step.error());
      return;
    }
    out.onNext(answer.get());
    out.onCompleted();
  }

  /** The id of what the n-th request (from 1) created: which attempt was answered. */
  private String created() {
    return "created-by-request-" + requests.size();
  }

  final class Users extends UserServiceGrpc.UserServiceImplBase {
    @Override
    public void createUser(CreateUserRequest request, StreamObserver<CreateUserResponse> out) {
      serve(
          request,
          out,
          () ->
              CreateUserResponse.newBuilder().setUser(User.newBuilder().setId(created())).build());
    }

    @Override
    public void cloneUser(CloneUserRequest request, StreamObserver<CloneUserResponse> out) {
      serve(request, out, CloneUserResponse::getDefaultInstance);
    }

    @Override
    public void getUser(GetUserRequest request, StreamObserver<GetUserResponse> out) {
      serve(
          request,
          out,
          () -> GetUserResponse.newBuilder().setUser(User.newBuilder().setId(created())).build());
    }
  }

  final class Groups extends GroupServiceGrpc.GroupServiceImplBase {
    @Override
    public void createGroup(CreateGroupRequest request, StreamObserver<CreateGroupResponse> out) {
      serve(request, out, CreateGroupResponse::getDefaultInstance);
    }

    @Override
    public void createUnit(CreateUnitRequest request, StreamObserver<CreateUnitResponse> out) {
      serve(request, out, CreateUnitResponse::getDefaultInstance);
    }

    @Override
    public void createProfile(
        CreateProfileRequest request, StreamObserver<CreateProfileResponse> out) {
      serve(request, out, CreateProfileResponse::getDefaultInstance);
    }
  }

  final class Auth extends AuthServiceGrpc.AuthServiceImplBase {
    @Override
    public void createApiKey(
        CreateApiKeyRequest request, StreamObserver<CreateApiKeyResponse> out) {
      serve(
          request,
          out,
          () ->
              CreateApiKeyResponse.newBuilder()
                  .setApiKey(ApiKey.newBuilder().setId(created()))
                  .build());
    }
  }

  /** An error as Roster sends it: a google.rpc.Status with these details. */
  static StatusRuntimeException error(Status.Code code, String message, Message... details) {
    var status = com.google.rpc.Status.newBuilder().setCode(code.value()).setMessage(message);
    for (Message detail : details) {
      status.addDetails(Any.pack(detail));
    }
    return StatusProto.toStatusRuntimeException(status.build());
  }

  static RetryInfo retryAfter(Duration delay) {
    return RetryInfo.newBuilder()
        .setRetryDelay(
            com.google.protobuf.Duration.newBuilder()
                .setSeconds(delay.getSeconds())
                .setNanos(delay.getNano()))
        .build();
  }

  static ErrorInfo reason(String reason) {
    return ErrorInfo.newBuilder().setReason(reason).setDomain("roster").build();
  }

  static CreateUserRequest newUser(String requestId) {
    return CreateUserRequest.newBuilder()
        .setUser(
            User.newBuilder().setFirstName("Ana").setLastName("Souza").setEmail("ana@example.com"))
        .setRequestId(requestId)
        .build();
  }

  private long millisBetweenArrivals(int first, int second) {
    return TimeUnit.NANOSECONDS.toMillis(arrivals.get(second) - arrivals.get(first));
  }

  @Test
  void aCreateIsSentAgainUnchangedWithItsRequestIdUntilItIsAnswered() {
    script.add(Step.fail(Status.UNAVAILABLE.withDescription("connection refused")));
    script.add(Step.fail(Status.DEADLINE_EXCEEDED));
    CreateUserRequest request = newUser("row-17-of-people.csv");
    assertEquals("created-by-request-3", roster.createUser(request).getUser().getId());
    assertEquals(List.of(request, request, request), requests);
  }

  @Test
  void anEmptyRequestIdIsFilledWithAFreshUuidKeptAcrossRetries() {
    script.add(Step.fail(Status.UNAVAILABLE));
    script.add(Step.fail(Status.UNAVAILABLE));
    roster.createUser(newUser(""));
    assertEquals(3, requests.size());
    String id = ((CreateUserRequest) requests.get(0)).getRequestId();
    assertEquals(id, UUID.fromString(id).toString(), "a UUID");
    for (Message sent : requests) {
      assertEquals(newUser(id), sent, "the same request, the same id");
    }

    roster.createUser(newUser(""));
    String next = ((CreateUserRequest) requests.get(3)).getRequestId();
    assertNotEquals(id, next, "a new create, a new id");
  }

  @Test
  void everyCreateFillsItsRequestIdAndIsRetried() {
    List<Runnable> creates =
        List.of(
            () -> roster.createUser(CreateUserRequest.getDefaultInstance()),
            () -> roster.cloneUser(CloneUserRequest.getDefaultInstance()),
            () -> roster.createGroup(CreateGroupRequest.getDefaultInstance()),
            () -> roster.createUnit(CreateUnitRequest.getDefaultInstance()),
            () -> roster.createProfile(CreateProfileRequest.getDefaultInstance()),
            () -> roster.createApiKey(CreateApiKeyRequest.getDefaultInstance()));
    for (Runnable create : creates) {
      requests.clear();
      script.add(Step.fail(Status.UNAVAILABLE));
      create.run();
      assertEquals(2, requests.size(), requests.toString());
      String first = requestId(requests.get(0));
      assertFalse(first.isEmpty(), requests.get(0).getDescriptorForType().getName());
      assertEquals(first, requestId(requests.get(1)));
    }
  }

  static String requestId(Message request) {
    return (String) request.getField(request.getDescriptorForType().findFieldByName("request_id"));
  }

  @Test
  void whatANewAttemptMayCureIsRetried() {
    List<StatusRuntimeException> failures =
        List.of(
            error(Status.Code.UNAVAILABLE, "the database is unavailable; retry in a moment",
                reason("DATABASE_UNAVAILABLE"), retryAfter(Duration.ofMillis(5))),
            Status.UNAVAILABLE.withDescription("connection reset").asRuntimeException(),
            Status.DEADLINE_EXCEEDED.asRuntimeException(),
            error(Status.Code.RESOURCE_EXHAUSTED, "too many calls",
                reason("THROTTLED"), retryAfter(Duration.ofMillis(5))),
            error(Status.Code.ALREADY_EXISTS, "a request with this request_id is being processed",
                reason("REQUEST_IN_PROGRESS")));
    failures.forEach(failure -> script.add(Step.fail(failure)));
    assertEquals(
        "created-by-request-" + (failures.size() + 1),
        roster.createUser(newUser("r1")).getUser().getId());
  }

  @Test
  void answersEveryAttemptWouldRepeatAreThrownAtOnce() {
    List<StatusRuntimeException> answers =
        List.of(
            error(Status.Code.RESOURCE_EXHAUSTED, "quota", reason("RESOURCE_EXHAUSTED")),
            error(Status.Code.ALREADY_EXISTS, "User already exists", reason("USER_ALREADY_EXISTS")),
            error(
                Status.Code.INVALID_ARGUMENT,
                "user.email: not an email",
                BadRequest.newBuilder()
                    .addFieldViolations(
                        BadRequest.FieldViolation.newBuilder().setField("user.email"))
                    .build()),
            Status.PERMISSION_DENIED.asRuntimeException(),
            Status.UNAUTHENTICATED.asRuntimeException(),
            Status.NOT_FOUND.asRuntimeException(),
            Status.FAILED_PRECONDITION.asRuntimeException(),
            Status.ABORTED.asRuntimeException(),
            Status.INTERNAL.asRuntimeException(),
            Status.UNKNOWN.asRuntimeException(),
            Status.CANCELLED.asRuntimeException(),
            Status.UNIMPLEMENTED.asRuntimeException());
    for (StatusRuntimeException answer : answers) {
      requests.clear();
      script.add(Step.fail(answer));
      var thrown =
          assertThrows(StatusRuntimeException.class, () -> roster.createUser(newUser("r")));
      assertEquals(answer.getStatus().getCode(), thrown.getStatus().getCode());
      assertEquals(answer.getStatus().getDescription(), thrown.getStatus().getDescription());
      assertEquals(1, requests.size(), answer.getStatus() + " is not retried");
    }
  }

  @Test
  void theBudgetEndsTheRetriesWithTheLastError() {
    for (int attempt = 1; attempt <= 1000; attempt++) {
      script.add(Step.fail(Status.UNAVAILABLE.withDescription("attempt " + attempt)));
    }
    Roster brief =
        roster.withRetryPolicy(
            FAST.withBackoff(Duration.ofMillis(10), Duration.ofMillis(40))
                .withBudget(Duration.ofMillis(1000)));
    long started = System.nanoTime();
    var thrown = assertThrows(StatusRuntimeException.class, () -> brief.createUser(newUser("r")));
    long took = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
    assertEquals(Status.Code.UNAVAILABLE, thrown.getStatus().getCode());
    assertEquals("attempt " + requests.size(), thrown.getStatus().getDescription(), "the last");
    assertTrue(requests.size() > 3, requests.size() + " attempts");
    assertTrue(took < 1000 + 1000, "retried for " + took + " ms");
    long last = TimeUnit.NANOSECONDS.toMillis(arrivals.get(requests.size() - 1) - arrivals.get(0));
    // No retry starts with less than 100 ms left; the next wait is 40 ms at most.
    assertTrue(last > 1000 - 100 - 40 - 200, "the last attempt " + last + " ms after the first");
  }

  @Test
  void theServersRetryInfoDelayIsWaited() {
    script.add(
        Step.fail(
            error(Status.Code.UNAVAILABLE, "the database is unavailable",
                retryAfter(Duration.ofMillis(400)))));
    roster.createUser(newUser("r"));
    assertEquals(2, requests.size());
    long waited = millisBetweenArrivals(0, 1);
    assertTrue(waited >= 400, "retried after " + waited + " ms (the backoff alone: 5 ms at most)");
  }

  @Test
  void aRetryInfoDelayPastTheBudgetEndsTheRetriesAtOnce() {
    script.add(
        Step.fail(
            error(Status.Code.RESOURCE_EXHAUSTED, "throttled", reason("THROTTLED"),
                retryAfter(Duration.ofSeconds(60)))));
    long started = System.nanoTime();
    var thrown = assertThrows(StatusRuntimeException.class, () -> roster.createUser(newUser("r")));
    long took = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
    assertEquals(Status.Code.RESOURCE_EXHAUSTED, thrown.getStatus().getCode());
    assertEquals(1, requests.size());
    assertTrue(took < 5000, "gave up after " + took + " ms, not after the 30 s budget");
  }

  @Test
  void anAttemptUnansweredByItsDeadlineIsRetriedWithTheSameRequestId() {
    script.add(Step.HANG);
    Roster prompt = roster.withRetryPolicy(FAST.withAttemptTimeout(Duration.ofMillis(300)));
    assertEquals("created-by-request-2", prompt.createUser(newUser("r")).getUser().getId());
    assertEquals(List.of(newUser("r"), newUser("r")), requests);
    for (long left : deadlines) {
      assertTrue(left > 0 && left <= 300, "the server was given " + left + " ms");
    }
    // Its deadline started on the client, a little before the request arrived.
    long waited = millisBetweenArrivals(0, 1);
    assertTrue(waited >= 250, "the first attempt ended after " + waited + " ms");
  }

  @Test
  void noAttemptOutlivesTheBudget() {
    script.add(Step.HANG);
    Roster brief = roster.withRetryPolicy(FAST.withBudget(Duration.ofMillis(300)));
    var thrown = assertThrows(StatusRuntimeException.class, () -> brief.createUser(newUser("r")));
    assertEquals(Status.Code.DEADLINE_EXCEEDED, thrown.getStatus().getCode());
    assertTrue(deadlines.get(0) <= 300, "the attempt's deadline: " + deadlines.get(0) + " ms");
  }

  @Test
  void theCallersContextDeadlineShortensTheBudget() throws Exception {
    for (int attempt = 1; attempt <= 1000; attempt++) {
      script.add(Step.fail(Status.UNAVAILABLE));
    }
    long started = System.nanoTime();
    var thrown =
        assertThrows(
            StatusRuntimeException.class,
            () ->
                Context.current()
                    .withDeadlineAfter(300, TimeUnit.MILLISECONDS, TIMER)
                    .call(() -> roster.createUser(newUser("r"))));
    long took = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
    assertEquals(Status.Code.UNAVAILABLE, thrown.getStatus().getCode());
    assertTrue(took < 300 + 1000, "retried for " + took + " ms");
  }

  /** Ends the callers' contexts at their deadlines. */
  private static final ScheduledExecutorService TIMER =
      Executors.newSingleThreadScheduledExecutor();

  @Test
  void aReadIsRetriedThroughRetrying() {
    script.add(Step.fail(Status.UNAVAILABLE));
    GetUserRequest request = GetUserRequest.newBuilder().setUserId("u1").build();
    User user = roster.retrying(() -> roster.users().getUser(request)).getUser();
    assertEquals("created-by-request-2", user.getId());
    assertEquals(List.of(request, request), requests);
  }

  @Test
  void interruptingTheWaitEndsTheCallWithCancelled() throws Exception {
    script.add(
        Step.fail(error(Status.Code.UNAVAILABLE, "down", retryAfter(Duration.ofSeconds(20)))));
    CompletableFuture<Throwable> thrown = new CompletableFuture<>();
    CompletableFuture<Boolean> interrupted = new CompletableFuture<>();
    Thread caller =
        new Thread(
            () -> {
              try {
                roster.createUser(newUser("r"));
                thrown.complete(null);
              } catch (Throwable e) {
                thrown.complete(e);
              }
              interrupted.complete(Thread.currentThread().isInterrupted());
            });
    caller.start();
    while (requests.isEmpty()) {
      Thread.sleep(10);
    }
    Thread.sleep(100); // Waiting the 20 s the server asked for.
    caller.interrupt();
    var error = (StatusRuntimeException) thrown.get(5, TimeUnit.SECONDS);
    assertEquals(Status.Code.CANCELLED, error.getStatus().getCode());
    assertEquals(Status.Code.UNAVAILABLE, ((StatusRuntimeException) error.getSuppressed()[0])
        .getStatus().getCode(), "the last error is kept");
    assertTrue(interrupted.get(5, TimeUnit.SECONDS), "the interrupt is kept");
    assertEquals(1, requests.size());
  }

  @Test
  void badPoliciesAndRequestsWithoutRequestIdAreRefused() {
    assertThrows(
        IllegalArgumentException.class,
        () -> RetryPolicy.defaults().withBackoff(Duration.ofSeconds(2), Duration.ofSeconds(1)));
    assertThrows(
        IllegalArgumentException.class,
        () -> RetryPolicy.defaults().withBackoff(Duration.ZERO, Duration.ofSeconds(1)));
    assertThrows(
        IllegalArgumentException.class, () -> RetryPolicy.defaults().withBudget(Duration.ZERO));
    assertThrows(
        IllegalArgumentException.class,
        () -> RetryPolicy.defaults().withAttemptTimeout(Duration.ofSeconds(-1)));
    assertThrows(NullPointerException.class, () -> roster.withRetryPolicy(null));
    assertThrows(
        IllegalArgumentException.class,
        () -> Retries.withRequestId(GetUserRequest.getDefaultInstance()));
  }
}
