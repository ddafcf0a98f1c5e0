//! A connection of its own that listens to one notification channel: what
//! commits elsewhere announces (`pg_notify`) reaches this server through it.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};

use super::Pool;

pub struct Notifications {
    listener: PgListener,
}

impl Notifications {
    /// Listens from now on: a notification committed after this returns is heard.
    /// `application_name` is how the connection shows in `pg_stat_activity`.
    pub async fn listen(
        pool: &Pool,
        channel: &str,
        application_name: &str,
    ) -> Result<Self, sqlx::Error> {
        let own = PgPoolOptions::new().max_connections(1).connect_lazy_with(
            (*pool.connect_options())
                .clone()
                .application_name(application_name),
        );
        let mut listener = PgListener::connect_with(&own).await?;
        // A lost connection is the caller's to handle: it may have missed notifications.
        listener.eager_reconnect(false);
        listener.listen(channel).await?;
        Ok(Self { listener })
    }

    /// The next payload. Silence longer than `alive_within` is answered by a
    /// probe of the connection; an error means the connection is lost (and
    /// notifications may have been missed).
    pub async fn next(&mut self, alive_within: Duration) -> Result<String, sqlx::Error> {
        loop {
            // `try_recv` is cancel-safe: a timeout loses no notification.
            match tokio::time::timeout(alive_within, self.listener.try_recv()).await {
                Ok(Ok(Some(notification))) => return Ok(notification.payload().to_owned()),
                Ok(Ok(None)) => {
                    let lost = std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the listening connection was lost",
                    );
                    return Err(sqlx::Error::Io(lost));
                }
                Ok(Err(error)) => return Err(error),
                Err(_silence) => self.probe(alive_within).await?,
            }
        }
    }

    async fn probe(&mut self, within: Duration) -> Result<(), sqlx::Error> {
        let probe = sqlx::query!("select 1 as \"alive!\"").fetch_one(&mut self.listener);
        match tokio::time::timeout(within, probe).await {
            Ok(answer) => answer.map(|_| ()),
            Err(_) => Err(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())),
        }
    }
}
