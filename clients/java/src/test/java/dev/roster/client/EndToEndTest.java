package dev.roster.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.rpc.BadRequest;
import dev.roster.v1.AddUserToGroupsRequest;
import dev.roster.v1.Change;
import dev.roster.v1.ChangeKind;
import dev.roster.v1.ChangeOperation;
import dev.roster.v1.CreateApiKeyRequest;
import dev.roster.v1.CreateGroupRequest;
import dev.roster.v1.CreateUserRequest;
import dev.roster.v1.FieldIssue;
import dev.roster.v1.GetUserRequest;
import dev.roster.v1.Group;
import dev.roster.v1.ImportOptions;
import dev.roster.v1.ImportRowResult;
import dev.roster.v1.ListProfilesRequest;
import dev.roster.v1.ListUsersRequest;
import dev.roster.v1.LookupUserRequest;
import dev.roster.v1.Profile;
import dev.roster.v1.RevokeApiKeyRequest;
import dev.roster.v1.Scope;
import dev.roster.v1.SetUserStatusRequest;
import dev.roster.v1.UnitScope;
import dev.roster.v1.User;
import dev.roster.v1.UserStatus;
import dev.roster.v1.WhoAmIRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.InputStream;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Collectors;
import org.apache.commons.csv.CSVFormat;
import org.apache.commons.csv.CSVRecord;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * End-to-end tests against a running {@code roster serve}, started by {@code clients/e2e} with an
 * organization of their own: ROSTER_SERVER (host:port, plaintext unless ROSTER_CA_CERT names the
 * CA of its certificate; ROSTER_CLIENT_CERT and ROSTER_CLIENT_KEY for mutual TLS),
 * ROSTER_ADMIN_KEY, ROSTER_VIEWER_KEY, ROSTER_IMPORT_FILE and ROSTER_CLI_RESULTS (what {@code
 * roster import} wrote for the same file).
 */
class EndToEndTest {
  private static Roster admin;
  private static Roster viewer;

  static String env(String name) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      throw new IllegalStateException(name + " is not set: run the end-to-end tests with clients/e2e");
    }
    return value;
  }

  /** Over TLS when clients/e2e gives a CA, with a client certificate when it gives one. */
  static Roster dial(String token) throws IOException {
    return dial(env("ROSTER_SERVER"), token);
  }

  /** As {@link #dial(String)}, to {@code target} (host:port). */
  static Roster dial(String target, String token) throws IOException {
    String ca = System.getenv("ROSTER_CA_CERT");
    if (ca == null || ca.isEmpty()) {
      return Roster.connect(target, token, true);
    }
    String cert = System.getenv("ROSTER_CLIENT_CERT");
    boolean mutual = cert != null && !cert.isEmpty();
    return Roster.connect(
        target,
        token,
        Roster.tls(
            Path.of(ca),
            mutual ? Path.of(cert) : null,
            mutual ? Path.of(env("ROSTER_CLIENT_KEY")) : null));
  }

  @BeforeAll
  static void connect() throws IOException {
    admin = dial(env("ROSTER_ADMIN_KEY"));
    viewer = dial(env("ROSTER_VIEWER_KEY"));
  }

  @AfterAll
  static void close() throws InterruptedException {
    admin.close();
    viewer.close();
  }

  @Test
  void anAdminKeyCreatesAGroupAndAUserThenFindsThem() {
    var me = admin.auth().whoAmI(WhoAmIRequest.getDefaultInstance());
    assertTrue(me.getOrganizationAdmin());
    assertTrue(me.hasApiKey());

    Group group = createGroup("Java auditors");
    User user =
        admin
            .users()
            .createUser(
                CreateUserRequest.newBuilder()
                    .setUser(
                        User.newBuilder()
                            .setFirstName("Duke")
                            .setLastName("Araújo")
                            .setEmail("duke@e2e-java.example"))
                    .addGroupIds(group.getId())
                    .build())
            .getUser();

    var found = admin.users().listUsers(ListUsersRequest.newBuilder().setQuery("araujo duke").build());
    assertEquals(List.of(user.getId()), found.getUsersList().stream().map(User::getId).toList());

    var byEmail =
        admin.users().lookupUser(LookupUserRequest.newBuilder().setEmail("DUKE@e2e-java.example").build());
    assertEquals(List.of(user.getId()), byEmail.getUsersList().stream().map(User::getId).toList());
  }

  @Test
  void anInvalidRequestNamesEachFieldInATypedBadRequest() {
    var error =
        assertThrows(
            StatusRuntimeException.class,
            () ->
                admin
                    .users()
                    .createUser(
                        CreateUserRequest.newBuilder()
                            .setUser(User.newBuilder().setLastName("Nobody").setEmail("not-an-email"))
                            .build()));
    assertEquals(Status.Code.INVALID_ARGUMENT, error.getStatus().getCode());
    BadRequest badRequest = Roster.badRequest(error).orElseThrow();
    Map<String, String> reasons =
        badRequest.getFieldViolationsList().stream()
            .collect(
                Collectors.toMap(
                    BadRequest.FieldViolation::getField,
                    BadRequest.FieldViolation::getReason,
                    (first, second) -> first));
    assertTrue(reasons.containsKey("user.first_name"), reasons.toString());
    assertTrue(reasons.containsKey("user.email"), reasons.toString());
  }

  @Test
  void aViewerKeyMayReadButNotWrite() {
    viewer.users().listUsers(ListUsersRequest.getDefaultInstance());
    var error =
        assertThrows(
            StatusRuntimeException.class,
            () ->
                viewer
                    .users()
                    .createUser(
                        CreateUserRequest.newBuilder()
                            .setUser(
                                User.newBuilder()
                                    .setFirstName("Not")
                                    .setLastName("Allowed")
                                    .setEmail("not.allowed@e2e-java.example"))
                            .build()));
    assertEquals(Status.Code.PERMISSION_DENIED, error.getStatus().getCode());
  }

  @Test
  void aCreateSentAgainWithItsRequestIdReturnsTheFirstUser() {
    CreateUserRequest request =
        CreateUserRequest.newBuilder()
            .setUser(
                User.newBuilder()
                    .setFirstName("Ada")
                    .setLastName("Twice")
                    .setEmail("ada.twice@e2e-java.example"))
            .setSendInvitation(false)
            .setRequestId("e2e-java-" + UUID.randomUUID())
            .build();
    User first = admin.createUser(request).getUser();
    // As a retry whose first answer was lost: the server returns the first result.
    assertEquals(first.getId(), admin.createUser(request).getUser().getId());
    assertEquals(first.getId(), admin.users().createUser(request).getUser().getId());

    // A fresh request id is a new create: the user exists, refused at once (not retried).
    var again =
        assertThrows(
            StatusRuntimeException.class,
            () -> admin.createUser(request.toBuilder().clearRequestId().build()));
    assertEquals(Status.Code.ALREADY_EXISTS, again.getStatus().getCode());

    GetUserRequest read = GetUserRequest.newBuilder().setUserId(first.getId()).build();
    User readBack = admin.retrying(() -> admin.users().getUser(read)).getUser();
    assertEquals(first.getId(), readBack.getId());
  }

  /** Streams the file from disk; every row's outcome matches what `roster import` reported. */
  @Test
  void importingAFileFromDiskGivesTheSameRowOutcomesAsTheCommandLine() throws Exception {
    List<List<String>> expected = new ArrayList<>();
    try (Reader results = Files.newBufferedReader(Path.of(env("ROSTER_CLI_RESULTS")))) {
      for (CSVRecord record : CSVFormat.DEFAULT.builder().setSkipHeaderRecord(true).setHeader().get().parse(results)) {
        // The file's own columns come first, then the results: pick by name.
        expected.add(
            List.of(
                record.get("line"),
                record.get("email"),
                record.get("outcome"),
                record.get("errors"),
                record.get("warnings")));
      }
    }
    List<List<String>> got = Collections.synchronizedList(new ArrayList<>());
    Roster.ImportResult result;
    try (InputStream file = Files.newInputStream(Path.of(env("ROSTER_IMPORT_FILE")))) {
      result =
          admin.importCsv(
              file,
              ImportOptions.newBuilder()
                  .setFileName("e2e.csv")
                  .setSendInvitations(false)
                  .setNotifyRequester(false)
                  .build(),
              row -> got.add(resultLine(row)));
    }
    assertFalse(result.jobId().isEmpty());
    assertEquals(result.jobId(), result.summary().getJobId());
    assertEquals(expected.size(), got.size());
    for (int i = 0; i < expected.size(); i++) {
      assertEquals(expected.get(i), got.get(i), "row " + i);
    }
    assertEquals(expected.size(), result.summary().getCounts().getRows());
  }

  /** A row result as `roster import` writes it to FILE.results.csv. */
  static List<String> resultLine(ImportRowResult row) {
    return List.of(
        Long.toString(row.getLine()),
        row.getEmail(),
        row.getOutcome().name().replaceFirst("^ROW_OUTCOME_", ""),
        issues(row.getErrorsList()),
        issues(row.getWarningsList()));
  }

  static String issues(List<FieldIssue> list) {
    return list.stream()
        .map(issue -> issue.getField() + ": " + issue.getMessage() + " (" + issue.getCode() + ")")
        .collect(Collectors.joining("; "));
  }

  /** A group giving the built-in Viewer profile on all units. */
  static Group createGroup(String name) {
    String viewerProfile =
        admin.groups().listProfiles(ListProfilesRequest.getDefaultInstance()).getProfilesList().stream()
            .filter(profile -> profile.getBuiltIn() && profile.getName().equals("Viewer"))
            .map(Profile::getId)
            .findFirst()
            .orElseThrow();
    return admin
        .createGroup(
            CreateGroupRequest.newBuilder()
                .setGroup(
                    Group.newBuilder()
                        .setName(name)
                        .setProfileId(viewerProfile)
                        .setUnitScope(UnitScope.UNIT_SCOPE_ALL_UNITS))
                .build())
        .getGroup();
  }

  /** A user created without an invitation, so that no mail touches it meanwhile. */
  static User createUser(String firstName) {
    return admin
        .createUser(
            CreateUserRequest.newBuilder()
                .setUser(
                    User.newBuilder()
                        .setFirstName(firstName)
                        .setLastName("Watched")
                        .setEmail(firstName.toLowerCase() + ".watched@e2e-java.example"))
                .setSendInvitation(false)
                .build())
        .getUser();
  }

  /** Only users' own changes, each with its user's access. */
  static final WatchOptions USERS_ONLY =
      WatchOptions.defaults().withKinds(ChangeKind.CHANGE_KIND_USER);

  /** Watches with the VIEWER key (WatchChanges asks no more) on a thread of the test's own. */
  @Test
  void aWatcherFromNowGetsEachChangeInCommitOrderWithTheUsersAccess() throws Exception {
    Group group = createGroup("Java watchers");
    WatchOptions options =
        WatchOptions.defaults()
            .withKinds(ChangeKind.CHANGE_KIND_USER, ChangeKind.CHANGE_KIND_MEMBERSHIP);
    try (Watcher watcher = new Watcher(viewer.watch(WatchStart.now(), options))) {
      User user = createUser("Grace");
      admin
          .users()
          .addUserToGroups(
              AddUserToGroupsRequest.newBuilder()
                  .setUserId(user.getId())
                  .addGroupIds(group.getId())
                  .build());
      admin
          .users()
          .setUserStatus(
              SetUserStatusRequest.newBuilder()
                  .setUserId(user.getId())
                  .setStatus(UserStatus.USER_STATUS_INACTIVE)
                  .build());

      Change created = watcher.next();
      assertEquals(ChangeKind.CHANGE_KIND_USER, created.getKind());
      assertEquals(ChangeOperation.CHANGE_OPERATION_CREATED, created.getOperation());
      assertEquals(user.getId(), created.getResourceId());
      assertFalse(created.getRequestId().isEmpty());
      assertTrue(created.hasUserAccess());

      Change grouped = watcher.next();
      assertEquals(ChangeKind.CHANGE_KIND_MEMBERSHIP, grouped.getKind());
      assertEquals(user.getId(), grouped.getResourceId());
      assertEquals(List.of(group.getId()), grouped.getGroupIdsList());
      assertTrue(grouped.hasUserAccess());

      Change deactivated = watcher.next();
      assertEquals(ChangeKind.CHANGE_KIND_USER, deactivated.getKind());
      assertEquals(ChangeOperation.CHANGE_OPERATION_UPDATED, deactivated.getOperation());
      assertEquals(user.getId(), deactivated.getResourceId());
      assertEquals(UserStatus.USER_STATUS_INACTIVE, deactivated.getUserAccess().getStatus());
      assertFalse(deactivated.getUserAccess().getCanSignIn());
      assertTrue(
          deactivated.getCommitTime().getSeconds() >= created.getCommitTime().getSeconds(),
          "commit order");
      watcher.assertNoMore(Duration.ofSeconds(1));
    }
  }

  @Test
  void aStreamClosedMidwayResumesAfterItsLastCursorWithExactlyTheRest() throws Exception {
    Change first;
    User second;
    try (Watcher watcher = new Watcher(viewer.watch(WatchStart.now(), USERS_ONLY))) {
      User ada = createUser("Ada");
      second = createUser("Barbara");
      first = watcher.next();
      assertEquals(ada.getId(), first.getResourceId());
    }
    User third = createUser("Katherine"); // Nobody watches.
    WatchStart afterFirst = WatchStart.after(first.getCursor());
    try (Watcher watcher = new Watcher(viewer.watch(afterFirst, USERS_ONLY))) {
      assertEquals(second.getId(), watcher.next().getResourceId());
      assertEquals(third.getId(), watcher.next().getResourceId());
      watcher.assertNoMore(Duration.ofSeconds(1));
    }
  }

  @Test
  void aCursorThatIsNotOneIsRefusedWithInvalidArgument() {
    try (ChangeStream changes = viewer.watch(WatchStart.after("not-a-cursor"))) {
      var error = assertThrows(StatusRuntimeException.class, changes::hasNext);
      assertEquals(Status.Code.INVALID_ARGUMENT, error.getStatus().getCode());
      List<String> fields =
          Roster.badRequest(error).orElseThrow().getFieldViolationsList().stream()
              .map(BadRequest.FieldViolation::getField)
              .toList();
      assertEquals(List.of("after_cursor"), fields);
      assertFalse(changes.hasNext(), "the stream ended");
    }
  }

  @Test
  void aRevokedKeysStreamEndsUnauthenticatedWithoutRetrying() throws Exception {
    var key =
        admin
            .auth()
            .createApiKey(
                CreateApiKeyRequest.newBuilder()
                    .setName("e2e-java-watch-revoked")
                    .addScopes(Scope.SCOPE_VIEWER)
                    .build());
    try (Roster revocable = dial(key.getSecret());
        Watcher watcher = new Watcher(revocable.watch(WatchStart.now()))) {
      admin
          .auth()
          .revokeApiKey(
              RevokeApiKeyRequest.newBuilder().setApiKeyId(key.getApiKey().getId()).build());
      var error = (StatusRuntimeException) watcher.failure();
      assertEquals(Status.Code.UNAUTHENTICATED, error.getStatus().getCode());
    }
  }

  /** A proxy between the client and the server drops the connection and refuses new ones. */
  @Test
  void aWatcherCutOffReconnectsAfterItsLastCursorAndMissesNothing() throws Exception {
    try (TcpProxy proxy = new TcpProxy(env("ROSTER_SERVER"));
        Roster through = dial("localhost:" + proxy.port(), env("ROSTER_VIEWER_KEY"))) {
      WatchOptions options = USERS_ONLY.withBackoff(Duration.ofMillis(50), Duration.ofMillis(200));
      try (Watcher watcher = new Watcher(through.watch(WatchStart.now(), options))) {
        User before = createUser("Hedy");
        assertEquals(before.getId(), watcher.next().getResourceId());

        proxy.refuse(true);
        proxy.cut();
        User during = createUser("Radia");
        Thread.sleep(500); // A few attempts fail meanwhile.
        proxy.refuse(false);
        User after = createUser("Frances");

        assertEquals(during.getId(), watcher.next().getResourceId());
        assertEquals(after.getId(), watcher.next().getResourceId());
        watcher.assertNoMore(Duration.ofSeconds(1));
      }
    }
  }

  /** A create sent while the server cannot be reached is retried until it is, and made once. */
  @Test
  void aCreateDuringAnOutageIsRetriedUntilTheServerAnswersAndMadeOnce() throws Exception {
    try (TcpProxy proxy = new TcpProxy(env("ROSTER_SERVER"));
        Roster through =
            dial("localhost:" + proxy.port(), env("ROSTER_ADMIN_KEY"))
                .withRetryPolicy(
                    RetryPolicy.defaults()
                        .withBackoff(Duration.ofMillis(50), Duration.ofMillis(200)))) {
      proxy.refuse(true);
      CompletableFuture<User> created =
          CompletableFuture.supplyAsync(
              () ->
                  through
                      .createUser(
                          CreateUserRequest.newBuilder()
                              .setUser(
                                  User.newBuilder()
                                      .setFirstName("Barbara")
                                      .setLastName("Outage")
                                      .setEmail("barbara.outage@e2e-java.example"))
                              .setSendInvitation(false)
                              .build())
                      .getUser());
      Thread.sleep(1000); // Attempts fail UNAVAILABLE meanwhile.
      assertFalse(created.isDone(), "still retrying: " + created);
      proxy.refuse(false);
      User user = created.get(30, TimeUnit.SECONDS);

      var found =
          admin
              .users()
              .lookupUser(
                  LookupUserRequest.newBuilder().setEmail("barbara.outage@e2e-java.example").build());
      assertEquals(List.of(user.getId()), found.getUsersList().stream().map(User::getId).toList());
    }
  }

  /** Reads a change stream on a thread of its own, so a test waits for a change at most 10 s. */
  static final class Watcher implements AutoCloseable {
    private static final Duration PATIENCE = Duration.ofSeconds(10);
    private final ChangeStream stream;
    private final BlockingQueue<Change> received = new LinkedBlockingQueue<>();
    private final CompletableFuture<Void> ended = new CompletableFuture<>();

    Watcher(ChangeStream stream) {
      this.stream = stream;
      Thread reader =
          new Thread(
              () -> {
                try {
                  for (Change change : stream) {
                    received.add(change);
                  }
                  ended.complete(null);
                } catch (RuntimeException e) {
                  ended.completeExceptionally(e);
                }
              },
              "watcher");
      reader.setDaemon(true);
      reader.start();
    }

    Change next() throws InterruptedException {
      Change change = received.poll(PATIENCE.toMillis(), TimeUnit.MILLISECONDS);
      if (change == null) {
        fail("no change within " + PATIENCE + (ended.isDone() ? "; it ended: " + ended : ""));
      }
      return change;
    }

    /** What ended the stream, waiting for it at most 10 s. */
    Throwable failure() throws InterruptedException {
      try {
        ended.get(PATIENCE.toMillis(), TimeUnit.MILLISECONDS);
      } catch (ExecutionException e) {
        return e.getCause();
      } catch (TimeoutException e) {
        fail("the stream still runs after " + PATIENCE);
      }
      return fail("the stream ended without an error");
    }

    void assertNoMore(Duration quiet) throws InterruptedException {
      Change change = received.poll(quiet.toMillis(), TimeUnit.MILLISECONDS);
      if (change != null) {
        fail("one change too many: " + change);
      }
    }

    @Override
    public void close() {
      stream.close();
    }
  }
}
