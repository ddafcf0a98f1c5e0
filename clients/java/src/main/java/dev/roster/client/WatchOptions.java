package dev.roster.client;

import dev.roster.v1.ChangeKind;
import java.time.Duration;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;

/**
 * What {@link Roster#watch(WatchStart, WatchOptions)} asks for and how it reconnects. Immutable:
 * each {@code with…} returns a copy.
 *
 * <pre>{@code
 * WatchOptions.defaults()
 *     .withKinds(ChangeKind.CHANGE_KIND_USER, ChangeKind.CHANGE_KIND_MEMBERSHIP)
 *     .withUserIds(List.of(userId));
 * }</pre>
 *
 * @param kinds only changes of these kinds; empty: every kind
 * @param userIds only USER and MEMBERSHIP changes of these users (other kinds are not filtered by
 *     it); empty: every user
 * @param initialBackoff the longest wait before the first reconnection after a dropped stream;
 *     it doubles with each failed attempt, up to {@code maxBackoff}
 * @param maxBackoff the cap of that wait
 * @param idleTimeout how long the stream may wait for a message before it takes the connection
 *     for dead and reconnects: the server sends a heartbeat when nothing changed for a while (10 s
 *     unless started with another {@code --change-heartbeat}), so a silent connection is one that
 *     no longer carries anything (a peer gone without closing it); keep it well above that
 */
public record WatchOptions(
    List<ChangeKind> kinds,
    List<String> userIds,
    Duration initialBackoff,
    Duration maxBackoff,
    Duration idleTimeout) {
  private static final WatchOptions DEFAULTS =
      new WatchOptions(
          List.of(),
          List.of(),
          Duration.ofMillis(250),
          Duration.ofSeconds(30),
          Duration.ofSeconds(35));

  public WatchOptions {
    kinds = List.copyOf(kinds);
    userIds = List.copyOf(userIds);
    for (ChangeKind kind : kinds) {
      if (kind == ChangeKind.UNRECOGNIZED || kind == ChangeKind.CHANGE_KIND_UNSPECIFIED) {
        throw new IllegalArgumentException("kinds: " + kind + " is not a kind of change");
      }
    }
    for (String userId : userIds) {
      if (userId.isEmpty()) {
        throw new IllegalArgumentException("userIds: an empty user id");
      }
    }
    Timing.requireBackoff(initialBackoff, maxBackoff);
    Timing.requirePositive(idleTimeout, "idleTimeout");
  }

  /**
   * Every kind, every user; reconnections wait from 250 ms up to 30 s; a connection silent for
   * 35 s (three heartbeats missed) is dropped.
   */
  public static WatchOptions defaults() {
    return DEFAULTS;
  }

  public WatchOptions withKinds(ChangeKind... kinds) {
    return withKinds(Arrays.asList(kinds));
  }

  public WatchOptions withKinds(Collection<ChangeKind> kinds) {
    return new WatchOptions(List.copyOf(kinds), userIds, initialBackoff, maxBackoff, idleTimeout);
  }

  public WatchOptions withUserIds(String... userIds) {
    return withUserIds(Arrays.asList(userIds));
  }

  public WatchOptions withUserIds(Collection<String> userIds) {
    return new WatchOptions(kinds, List.copyOf(userIds), initialBackoff, maxBackoff, idleTimeout);
  }

  public WatchOptions withBackoff(Duration initial, Duration max) {
    return new WatchOptions(kinds, userIds, initial, max, idleTimeout);
  }

  public WatchOptions withIdleTimeout(Duration idleTimeout) {
    return new WatchOptions(kinds, userIds, initialBackoff, maxBackoff, idleTimeout);
  }
}
