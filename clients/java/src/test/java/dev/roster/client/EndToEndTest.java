package dev.roster.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.rpc.BadRequest;
import dev.roster.v1.CreateGroupRequest;
import dev.roster.v1.CreateUserRequest;
import dev.roster.v1.FieldIssue;
import dev.roster.v1.Group;
import dev.roster.v1.ImportOptions;
import dev.roster.v1.ImportRowResult;
import dev.roster.v1.ListProfilesRequest;
import dev.roster.v1.ListUsersRequest;
import dev.roster.v1.LookupUserRequest;
import dev.roster.v1.Profile;
import dev.roster.v1.UnitScope;
import dev.roster.v1.User;
import dev.roster.v1.WhoAmIRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.InputStream;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
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
    String ca = System.getenv("ROSTER_CA_CERT");
    if (ca == null || ca.isEmpty()) {
      return Roster.connect(env("ROSTER_SERVER"), token, true);
    }
    String cert = System.getenv("ROSTER_CLIENT_CERT");
    boolean mutual = cert != null && !cert.isEmpty();
    return Roster.connect(
        env("ROSTER_SERVER"),
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

    String viewerProfile =
        admin.groups().listProfiles(ListProfilesRequest.getDefaultInstance()).getProfilesList().stream()
            .filter(profile -> profile.getBuiltIn() && profile.getName().equals("Viewer"))
            .map(Profile::getId)
            .findFirst()
            .orElseThrow();
    Group group =
        admin
            .groups()
            .createGroup(
                CreateGroupRequest.newBuilder()
                    .setGroup(
                        Group.newBuilder()
                            .setName("Java auditors")
                            .setProfileId(viewerProfile)
                            .setUnitScope(UnitScope.UNIT_SCOPE_ALL_UNITS))
                    .build())
            .getGroup();
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
}
