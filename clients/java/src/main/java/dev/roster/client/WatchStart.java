package dev.roster.client;

import dev.roster.v1.WatchChangesRequest;
import java.util.Objects;

/**
 * Where {@link Roster#watch(WatchStart, WatchOptions)} starts: {@link #now()}, {@link
 * #beginning()} of the retained window, or {@link #after(String)} a cursor received earlier.
 */
public final class WatchStart {
  private static final WatchStart NOW = new WatchStart(null, false);
  private static final WatchStart BEGINNING = new WatchStart(null, true);

  private final String cursor;
  private final boolean beginning;

  private WatchStart(String cursor, boolean beginning) {
    this.cursor = cursor;
    this.beginning = beginning;
  }

  /** The changes that commit from now on. */
  public static WatchStart now() {
    return NOW;
  }

  /** Every change the server still retains (7 days by default), then new ones. */
  public static WatchStart beginning() {
    return BEGINNING;
  }

  /**
   * The changes after {@code cursor}: the {@link dev.roster.v1.Change#getCursor() cursor} of a
   * change or {@link ChangeStream#cursor()}, kept for example with the data it fed. A cursor older
   * than the retained window fails the stream with {@code OUT_OF_RANGE}.
   */
  public static WatchStart after(String cursor) {
    Objects.requireNonNull(cursor, "cursor");
    if (cursor.isEmpty()) {
      throw new IllegalArgumentException("an empty cursor: use WatchStart.now() or beginning()");
    }
    return new WatchStart(cursor, false);
  }

  /** Sets the request's start: {@code after_cursor}, {@code from_beginning} or nothing (now). */
  void applyTo(WatchChangesRequest.Builder request) {
    if (cursor != null) {
      request.setAfterCursor(cursor);
    } else if (beginning) {
      request.setFromBeginning(true);
    } else {
      request.clearStart();
    }
  }

  @Override
  public String toString() {
    return cursor != null ? "after " + cursor : beginning ? "beginning" : "now";
  }
}
