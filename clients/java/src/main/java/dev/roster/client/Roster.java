package dev.roster.client;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.rpc.BadRequest;
import dev.roster.v1.AuthServiceGrpc;
import dev.roster.v1.ChangeServiceGrpc;
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
import dev.roster.v1.GroupServiceGrpc;
import dev.roster.v1.ImportOptions;
import dev.roster.v1.ImportRowResult;
import dev.roster.v1.ImportServiceGrpc;
import dev.roster.v1.ImportSummary;
import dev.roster.v1.ImportUsersRequest;
import dev.roster.v1.ImportUsersResponse;
import dev.roster.v1.OrganizationServiceGrpc;
import dev.roster.v1.UserServiceGrpc;
import io.grpc.CallCredentials;
import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.SecurityLevel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.MetadataUtils;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * A channel to a Roster server whose stubs carry a bearer token (an API key or a user's access
 * token) on every call, a streaming CSV import on the async stub, and {@link #watch(WatchStart,
 * WatchOptions)}, the organization's changes as they commit, and creates that are safe to retry
 * and retried ({@link #createUser(CreateUserRequest)} and the others, see there).
 *
 * <pre>{@code
 * try (Roster roster = Roster.connect("roster.internal:50051", apiKey, false)) {
 *   User user = roster.users().getUser(GetUserRequest.newBuilder().setUserId(id).build()).getUser();
 *   User created = roster.createUser(CreateUserRequest.newBuilder().setUser(ana).build()).getUser();
 * }
 * }</pre>
 */
public final class Roster implements AutoCloseable {
  /** How much of the file each message carries; the file is never held in memory beyond it. */
  public static final int CHUNK_SIZE = 64 * 1024;

  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> IMPORT_JOB_ID =
      Metadata.Key.of("roster-import-job-id", Metadata.ASCII_STRING_MARSHALLER);

  private final ManagedChannel channel;
  private final CallCredentials credentials;
  private final RetryPolicy retryPolicy;

  private Roster(ManagedChannel channel, CallCredentials credentials, RetryPolicy retryPolicy) {
    this.channel = channel;
    this.credentials = credentials;
    this.retryPolicy = retryPolicy;
  }

  private Roster(ManagedChannel channel, CallCredentials credentials) {
    this(channel, credentials, RetryPolicy.defaults());
  }

  /**
   * Connects to {@code target} (host:port). With {@code plaintext}, no TLS: for a server on
   * loopback or in development only, since the token then travels in the clear.
   */
  public static Roster connect(String target, String token, boolean plaintext) {
    if (plaintext) {
      return new Roster(
          Grpc.newChannelBuilder(target, InsecureChannelCredentials.create()).build(),
          bearer(token, true));
    }
    return connect(target, token, TlsChannelCredentials.create());
  }

  /**
   * Connects to {@code target} (host:port) over TLS with these credentials, for example {@link
   * #tls(Path, Path, Path)}.
   */
  public static Roster connect(String target, String token, ChannelCredentials tls) {
    return new Roster(Grpc.newChannelBuilder(target, tls).build(), bearer(token, false));
  }

  /**
   * TLS credentials from PEM files: {@code caCert}, the CA that signed the server's certificate
   * ({@code null} trusts the system roots), and {@code clientCert} and {@code clientKey} (PKCS#8),
   * the client certificate a server started with {@code --tls-client-ca} asks for (both {@code
   * null} for none).
   */
  public static ChannelCredentials tls(Path caCert, Path clientCert, Path clientKey)
      throws IOException {
    TlsChannelCredentials.Builder builder = TlsChannelCredentials.newBuilder();
    if (caCert != null) {
      builder.trustManager(caCert.toFile());
    }
    if (clientCert != null || clientKey != null) {
      if (clientCert == null || clientKey == null) {
        throw new IllegalArgumentException("a client certificate needs both its file and its key");
      }
      builder.keyManager(clientCert.toFile(), clientKey.toFile());
    }
    return builder.build();
  }

  /**
   * Per-call credentials {@code authorization: Bearer <token>}, for a stub of your own channel
   * ({@code stub.withCallCredentials(Roster.bearer(token, false))}). They refuse to travel
   * without TLS unless {@code plaintext} allows it.
   */
  public static CallCredentials bearer(String token, boolean plaintext) {
    return new CallCredentials() {
      @Override
      public void applyRequestMetadata(
          RequestInfo requestInfo, Executor appExecutor, MetadataApplier applier) {
        if (!plaintext && requestInfo.getSecurityLevel() != SecurityLevel.PRIVACY_AND_INTEGRITY) {
          applier.fail(
              Status.UNAUTHENTICATED.withDescription(
                  "refusing to send a bearer token over a connection without TLS"));
          return;
        }
        Metadata headers = new Metadata();
        headers.put(AUTHORIZATION, "Bearer " + token);
        applier.apply(headers);
      }
    };
  }

  public AuthServiceGrpc.AuthServiceBlockingStub auth() {
    return AuthServiceGrpc.newBlockingStub(channel).withCallCredentials(credentials);
  }

  public OrganizationServiceGrpc.OrganizationServiceBlockingStub organizations() {
    return OrganizationServiceGrpc.newBlockingStub(channel).withCallCredentials(credentials);
  }

  public UserServiceGrpc.UserServiceBlockingStub users() {
    return UserServiceGrpc.newBlockingStub(channel).withCallCredentials(credentials);
  }

  public GroupServiceGrpc.GroupServiceBlockingStub groups() {
    return GroupServiceGrpc.newBlockingStub(channel).withCallCredentials(credentials);
  }

  public ImportServiceGrpc.ImportServiceBlockingStub imports() {
    return ImportServiceGrpc.newBlockingStub(channel).withCallCredentials(credentials);
  }

  public ImportServiceGrpc.ImportServiceStub importsAsync() {
    return ImportServiceGrpc.newStub(channel).withCallCredentials(credentials);
  }

  public ChangeServiceGrpc.ChangeServiceBlockingStub changes() {
    return ChangeServiceGrpc.newBlockingStub(channel).withCallCredentials(credentials);
  }

  /**
   * This client with another {@link RetryPolicy} for its retrying calls ({@link
   * #createUser(CreateUserRequest)} and the other creates, {@link #retrying(Supplier)}). It
   * shares this one's channel: close one of the two, once.
   */
  public Roster withRetryPolicy(RetryPolicy policy) {
    return new Roster(channel, credentials, Objects.requireNonNull(policy, "policy"));
  }

  /** The policy of the retrying calls; {@link RetryPolicy#defaults()} unless set. */
  public RetryPolicy retryPolicy() {
    return retryPolicy;
  }

  /**
   * {@code CreateUser}, safe to retry and retried: when {@code request_id} is empty it is set to a
   * fresh random UUID, then the same request (the same id) is sent again after each failure a
   * new attempt may cure, and the server returns the first result to a retry instead of creating
   * the user twice. Retried: {@code UNAVAILABLE} (the server or its database is away, as for
   * about 10 s during a PostgreSQL failover), {@code DEADLINE_EXCEEDED} (the attempt's deadline
   * passed: whether it created the user is unknown, the retry finds out), {@code
   * RESOURCE_EXHAUSTED} with a {@code google.rpc.RetryInfo} (throttled), and {@code
   * ALREADY_EXISTS} with reason {@code REQUEST_IN_PROGRESS} (the first attempt still runs).
   * Every other error is thrown at once. The waits are the server's {@code RetryInfo} delay when
   * it gives one, else capped exponential backoff with jitter; the {@link #retryPolicy()}'s budget
   * (30 s by default) ends the retries with the last error.
   *
   * <p>Set {@code request_id} yourself (and keep it, with what you are creating) to carry the
   * guarantee across a restart of your process: the same id by the same key is the same user.
   *
   * @throws StatusRuntimeException the first error no retry may cure, or the last one when the
   *     budget ends; {@code CANCELLED} when the thread is interrupted
   */
  public CreateUserResponse createUser(CreateUserRequest request) {
    return create("CreateUser", request, users()::createUser);
  }

  /** {@code CloneUser}, safe to retry and retried as {@link #createUser(CreateUserRequest)}. */
  public CloneUserResponse cloneUser(CloneUserRequest request) {
    return create("CloneUser", request, users()::cloneUser);
  }

  /** {@code CreateGroup}, safe to retry and retried as {@link #createUser(CreateUserRequest)}. */
  public CreateGroupResponse createGroup(CreateGroupRequest request) {
    return create("CreateGroup", request, groups()::createGroup);
  }

  /** {@code CreateUnit}, safe to retry and retried as {@link #createUser(CreateUserRequest)}. */
  public CreateUnitResponse createUnit(CreateUnitRequest request) {
    return create("CreateUnit", request, groups()::createUnit);
  }

  /** {@code CreateProfile}, safe to retry and retried as {@link #createUser(CreateUserRequest)}. */
  public CreateProfileResponse createProfile(CreateProfileRequest request) {
    return create("CreateProfile", request, groups()::createProfile);
  }

  /**
   * {@code CreateApiKey}, safe to retry and retried as {@link #createUser(CreateUserRequest)}. A
   * retry that returns the first key returns its metadata only: the secret is shown once, so a
   * retried create whose first answer was lost comes back with an empty {@code secret} (revoke
   * that key and create another).
   */
  public CreateApiKeyResponse createApiKey(CreateApiKeyRequest request) {
    return create("CreateApiKey", request, auth()::createApiKey);
  }

  private <Q extends Message, R> R create(String method, Q request, Function<Q, R> rpc) {
    Q identified = Retries.withRequestId(request);
    return Retries.call(retryPolicy, method, () -> rpc.apply(identified));
  }

  /**
   * Runs {@code call}, one unary call on this client's stubs, retrying it as {@link
   * #createUser(CreateUserRequest)} does, under the {@link #retryPolicy()}: each attempt runs in
   * a {@link io.grpc.Context} with the attempt's deadline, which the stubs' calls take on. Only
   * for calls that are safe to repeat: reads, and creates whose request carries a {@code
   * request_id}. Never for other writes ({@code SetUserStatus}, {@code AddUserToGroups}, …):
   * one whose outcome was unknown could be applied twice.
   *
   * <pre>{@code
   * User user = roster.retrying(() -> roster.users().getUser(request)).getUser();
   * }</pre>
   */
  public <T> T retrying(Supplier<T> call) {
    return Retries.call(retryPolicy, "call", call);
  }

  /**
   * Watches the organization's changes ({@code WatchChanges}, a VIEWER key or more) from {@code
   * from}, reconnecting after the last cursor whenever the connection drops; see {@link
   * ChangeStream}. Returns once the server has answered the call, which it does after taking its
   * position: a stream from {@link WatchStart#now()} sends every change committed after {@code
   * watch} returned. Errors, the server's refusals included, come from the stream's {@code
   * hasNext()}. Close the stream to end the call.
   *
   * <pre>{@code
   * try (ChangeStream changes = roster.watch(WatchStart.now(), WatchOptions.defaults()
   *     .withKinds(ChangeKind.CHANGE_KIND_USER, ChangeKind.CHANGE_KIND_MEMBERSHIP))) {
   *   for (Change change : changes) {
   *     if (change.hasUserAccess()) {
   *       access.put(change.getResourceId(), change.getUserAccess());
   *     } else {
   *       access.remove(change.getResourceId()); // The user is gone.
   *     }
   *   }
   * }
   * }</pre>
   */
  public ChangeStream watch(WatchStart from, WatchOptions options) {
    return new ChangeStream(
        changes(), Objects.requireNonNull(from, "from"), Objects.requireNonNull(options, "options"));
  }

  /** {@link #watch(WatchStart, WatchOptions)} with {@link WatchOptions#defaults()}. */
  public ChangeStream watch(WatchStart from) {
    return watch(from, WatchOptions.defaults());
  }

  /** The typed field violations of an {@code INVALID_ARGUMENT}, if the error carries them. */
  public static Optional<BadRequest> badRequest(StatusRuntimeException error) {
    return detail(error, BadRequest.class);
  }

  /** The error's first detail of this type ({@code google.rpc.RetryInfo}, …), if it has one. */
  static <T extends Message> Optional<T> detail(StatusRuntimeException error, Class<T> type) {
    com.google.rpc.Status status = StatusProto.fromThrowable(error);
    if (status == null) {
      return Optional.empty();
    }
    for (com.google.protobuf.Any detail : status.getDetailsList()) {
      if (detail.is(type)) {
        try {
          return Optional.of(detail.unpack(type));
        } catch (InvalidProtocolBufferException e) {
          return Optional.empty();
        }
      }
    }
    return Optional.empty();
  }

  /** The end of an import: the job's id and its summary. */
  public record ImportResult(String jobId, ImportSummary summary) {}

  /**
   * Imports {@code file} (CSV, UTF-8 or Windows-1252) with {@code options}. Chunks are read and
   * sent only while the stream is ready (flow control), and {@code onRow} gets each row result
   * as it arrives, on a gRPC thread. Returns once the summary has arrived.
   *
   * @throws StatusRuntimeException the server's refusal, or CANCELLED if reading the file failed
   *     (the job then ends INTERRUPTED, keeping the rows already imported)
   */
  public ImportResult importCsv(
      InputStream file, ImportOptions options, Consumer<ImportRowResult> onRow)
      throws InterruptedException {
    AtomicReference<Metadata> headers = new AtomicReference<>();
    CompletableFuture<ImportSummary> done = new CompletableFuture<>();
    importsAsync()
        .withInterceptors(
            MetadataUtils.newCaptureMetadataInterceptor(headers, new AtomicReference<>()))
        .importUsers(new FileSender(file, options, onRow, done));
    try {
      ImportSummary summary = done.get();
      Metadata received = headers.get();
      String jobId = received == null ? summary.getJobId() : received.get(IMPORT_JOB_ID);
      return new ImportResult(jobId, summary);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof StatusRuntimeException status) {
        throw status;
      }
      throw Status.fromThrowable(e.getCause()).asRuntimeException();
    }
  }

  /** Sends the options then the file while the stream is ready; collects the results. */
  private static final class FileSender
      implements ClientResponseObserver<ImportUsersRequest, ImportUsersResponse> {
    private final InputStream file;
    private final ImportOptions options;
    private final Consumer<ImportRowResult> onRow;
    private final CompletableFuture<ImportSummary> done;
    private final byte[] buffer = new byte[CHUNK_SIZE];
    private ClientCallStreamObserver<ImportUsersRequest> requests;
    private boolean optionsSent;
    private boolean fileSent;
    private ImportSummary summary;

    FileSender(
        InputStream file,
        ImportOptions options,
        Consumer<ImportRowResult> onRow,
        CompletableFuture<ImportSummary> done) {
      this.file = file;
      this.options = options;
      this.onRow = onRow;
      this.done = done;
    }

    @Override
    public void beforeStart(ClientCallStreamObserver<ImportUsersRequest> requests) {
      this.requests = requests;
      requests.setOnReadyHandler(this::sendWhileReady);
    }

    private synchronized void sendWhileReady() {
      try {
        while (requests.isReady() && !fileSent) {
          if (!optionsSent) {
            requests.onNext(ImportUsersRequest.newBuilder().setOptions(options).build());
            optionsSent = true;
            continue;
          }
          int read = file.read(buffer);
          if (read < 0) {
            fileSent = true;
            requests.onCompleted();
          } else if (read > 0) {
            requests.onNext(
                ImportUsersRequest.newBuilder().setChunk(ByteString.copyFrom(buffer, 0, read)).build());
          }
        }
      } catch (IOException e) {
        // A cut file must not pass for a whole one: cancel rather than complete.
        fileSent = true;
        requests.cancel("reading the file failed", e);
      }
    }

    @Override
    public void onNext(ImportUsersResponse response) {
      switch (response.getMessageCase()) {
        case ROW -> onRow.accept(response.getRow());
        case SUMMARY -> summary = response.getSummary();
        default -> {}
      }
    }

    @Override
    public void onError(Throwable error) {
      done.completeExceptionally(error);
    }

    @Override
    public void onCompleted() {
      if (summary == null) {
        done.completeExceptionally(
            Status.INTERNAL.withDescription("the import ended without a summary").asRuntimeException());
      } else {
        done.complete(summary);
      }
    }
  }

  @Override
  public void close() throws InterruptedException {
    channel.shutdown();
    if (!channel.awaitTermination(10, TimeUnit.SECONDS)) {
      channel.shutdownNow();
    }
  }
}
