//! What a database error means for the caller: the SQLSTATE codes of
//! PostgreSQL are read here and nowhere else.

use crate::domain::DomainError;

/// The kinds of database errors a caller acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A concurrent change collided with the statement: a deadlock (40P01),
    /// a serialization failure (40001) or a unique violation (23505) from a
    /// row written meanwhile. Redoing the work may succeed.
    Contention,
    /// The statement was refused because of the values it was given: a data
    /// exception (class 22: too long, out of range, not valid for its type)
    /// or another integrity constraint violation (class 23).
    BadValue,
    /// The database cannot be reached or is going away: no connection could
    /// be had (refused, timed out, pool closed), the connection broke (I/O,
    /// TLS or protocol error), class 08 (connection exception), or the
    /// server is shutting down or starting (57P01 admin shutdown, 57P02 crash
    /// shutdown, 57P03 cannot connect now). The same call may succeed later.
    Unavailable,
    /// Anything else (a cancelled query, a read-only server after a
    /// failover, too many connections): no value's fault.
    Other,
}

/// Classifies a database error by its SQLSTATE, or by how it failed when
/// the server gave none.
pub fn classify(error: &sqlx::Error) -> DbErrorKind {
    let Some(code) = sqlstate(error) else {
        return match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => DbErrorKind::Unavailable,
            _ => DbErrorKind::Other,
        };
    };
    match code.as_ref() {
        "40P01" | "40001" | "23505" => DbErrorKind::Contention,
        // Shut down or starting, too many connections (replicas past
        // max_connections), a read-only node after a failover: retry later.
        "57P01" | "57P02" | "57P03" | "53300" | "25006" => DbErrorKind::Unavailable,
        code if code.starts_with("08") => DbErrorKind::Unavailable,
        code if code.starts_with("22") || code.starts_with("23") => DbErrorKind::BadValue,
        _ => DbErrorKind::Other,
    }
}

/// Whether `cause` (anywhere in its chain) is a database error that means
/// the database is unavailable (see `DbErrorKind::Unavailable`).
pub fn is_unavailable_cause(cause: &anyhow::Error) -> bool {
    cause.chain().any(|error| {
        error
            .downcast_ref::<sqlx::Error>()
            .is_some_and(|error| classify(error) == DbErrorKind::Unavailable)
    })
}

/// Whether a `create database` failed because the database exists: a
/// concurrent creator (another process opening the same cluster) won.
pub fn is_duplicate_database(error: &sqlx::Error) -> bool {
    sqlstate(error).as_deref() == Some("42P04")
}

/// Whether the connection a statement ran on broke under it (I/O, TLS or
/// protocol error, class 08, or a terminated backend: 57P01/57P02): the
/// statement never ran or its answer was lost. A failure to get a
/// connection at all is not one of these.
pub fn is_connection_lost(error: &sqlx::Error) -> bool {
    match sqlstate(error) {
        Some(code) => matches!(code.as_ref(), "57P01" | "57P02") || code.starts_with("08"),
        None => matches!(
            error,
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_)
        ),
    }
}

/// Whether the connection a statement failed on can run the next one: an
/// error PostgreSQL answered (not one that ends the session, FATAL or
/// PANIC, nor a lost connection), or no row where one was wanted. After any
/// other error (I/O, protocol, decoding) rows may be left unread.
pub fn leaves_connection_usable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::RowNotFound => true,
        sqlx::Error::Database(database) => {
            let ends_session = database
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some_and(|error| {
                    matches!(
                        error.severity(),
                        sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                    )
                });
            !ends_session && !is_connection_lost(error)
        }
        _ => false,
    }
}

fn sqlstate(error: &sqlx::Error) -> Option<std::borrow::Cow<'_, str>> {
    error.as_database_error().and_then(|e| e.code())
}

/// A concurrent change collided with the work (see `DbErrorKind::Contention`):
/// redoing it may succeed.
pub fn is_contention(error: &DomainError) -> bool {
    classify_domain_error(error) == DbErrorKind::Contention
}

/// The values given to a statement made it fail (see `DbErrorKind::BadValue`).
pub fn is_bad_value(error: &DomainError) -> bool {
    classify_domain_error(error) == DbErrorKind::BadValue
}

/// The database could not be reached (see `DbErrorKind::Unavailable`).
pub fn is_unavailable(error: &DomainError) -> bool {
    classify_domain_error(error) == DbErrorKind::Unavailable
}

/// Classifies the database error inside an internal domain error; any other
/// domain error is `Other` (`Unavailable` is `Unavailable`).
fn classify_domain_error(error: &DomainError) -> DbErrorKind {
    match error {
        DomainError::Internal(error) => error
            .downcast_ref::<sqlx::Error>()
            .map_or(DbErrorKind::Other, classify),
        DomainError::Unavailable(_) => DbErrorKind::Unavailable,
        _ => DbErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A database error with a SQLSTATE, as PostgreSQL reports one.
    #[derive(Debug)]
    struct Refusal(&'static str);

    impl std::fmt::Display for Refusal {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Refusal {}

    impl sqlx::error::DatabaseError for Refusal {
        fn message(&self) -> &str {
            "refused"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn only_42p04_means_the_database_exists() {
        let exists = sqlx::Error::Database(Box::new(Refusal("42P04")));
        assert!(is_duplicate_database(&exists));
        let other = sqlx::Error::Database(Box::new(Refusal("42P07")));
        assert!(!is_duplicate_database(&other));
        assert!(!is_duplicate_database(&sqlx::Error::PoolTimedOut));
    }

    #[test]
    fn a_connection_is_usable_after_an_answered_error_only() {
        let answered = |sqlstate| sqlx::Error::Database(Box::new(Refusal(sqlstate)));
        assert!(leaves_connection_usable(&answered("23505")));
        assert!(leaves_connection_usable(&sqlx::Error::RowNotFound));
        for lost in ["57P01", "08006"] {
            assert!(!leaves_connection_usable(&answered(lost)), "{lost}");
        }
        let io = sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into());
        assert!(!leaves_connection_usable(&io));
        assert!(!leaves_connection_usable(&sqlx::Error::Protocol(
            "cut".into()
        )));
    }

    fn database_error(sqlstate: &'static str) -> DomainError {
        DomainError::from(sqlx::Error::Database(Box::new(Refusal(sqlstate))))
    }

    #[test]
    fn sqlstates_are_classified_by_what_the_caller_does_next() {
        let table = [
            // Concurrent changes: redo the work.
            (&["40P01", "40001", "23505"][..], DbErrorKind::Contention),
            // The values of a statement: the row at fault fails.
            (
                &[
                    "22001", "22003", "22P02", "22021", "23502", "23503", "23514",
                ],
                DbErrorKind::BadValue,
            ),
            // A shutdown, a server starting, a lost connection, too many
            // clients, a read-only node after a failover: retry later.
            (
                &[
                    "57P01", "57P02", "57P03", "08006", "08001", "53300", "25006",
                ][..],
                DbErrorKind::Unavailable,
            ),
            // A cancel, a trigger's exception: no value's fault.
            (&["57014", "P0001", "XX000"], DbErrorKind::Other),
        ];
        for (sqlstates, kind) in table {
            for &sqlstate in sqlstates {
                let error = database_error(sqlstate);
                assert_eq!(classify_domain_error(&error), kind, "{sqlstate}");
            }
        }
        assert_eq!(
            classify_domain_error(&database_error("42P04")),
            DbErrorKind::Other
        );
        assert_eq!(
            classify_domain_error(&DomainError::Internal(anyhow::anyhow!("other"))),
            DbErrorKind::Other
        );
    }

    #[test]
    fn only_a_broken_connection_is_lost_not_a_missing_one() {
        let reset = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert!(is_connection_lost(&sqlx::Error::Io(reset)));
        for sqlstate in ["57P01", "57P02", "08006"] {
            let error = sqlx::Error::Database(Box::new(Refusal(sqlstate)));
            assert!(is_connection_lost(&error), "{sqlstate}");
        }
        let timed_out = sqlx::Error::Database(Box::new(Refusal("57014")));
        assert!(!is_connection_lost(&timed_out));
        assert!(!is_connection_lost(&sqlx::Error::PoolTimedOut));
        assert!(!is_connection_lost(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn a_database_that_cannot_be_reached_is_unavailable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(refused),
            sqlx::Error::Protocol("unexpected end of stream".into()),
        ] {
            assert_eq!(classify(&error), DbErrorKind::Unavailable, "{error}");
            assert!(is_unavailable(&DomainError::from(error)));
        }
        assert!(!is_unavailable(&DomainError::from(
            sqlx::Error::RowNotFound
        )));
        // Wrapped in context by the code that met it.
        let wrapped = anyhow::Error::from(sqlx::Error::PoolTimedOut).context("cannot claim");
        assert!(is_unavailable_cause(&wrapped));
        assert!(!is_unavailable_cause(&anyhow::anyhow!("other")));
    }
}
