//! Opens Roster's database: the one `DATABASE_URL` names, or the private
//! cluster of the data directory. Migrations are applied on open, under
//! sqlx's advisory lock, so replicas and CLI commands may start together.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use sqlx::{postgres::PgPoolOptions, ConnectOptions};

use crate::{
    cluster::{ClusterOptions, PrivateCluster},
    database_hosts::{accepts_writes, DatabaseHosts},
    store,
};

/// Name of Roster's database inside its private cluster.
pub const PRIVATE_DATABASE: &str = "roster";

#[derive(Debug, Clone)]
pub enum DatabaseSource {
    Url(String),
    /// `serving`: opened by `roster serve`, which owns the cluster (see
    /// `ClusterOptions::serving`); admin commands share it. `may_create`:
    /// a missing cluster is created (`roster serve`, or a command given
    /// `--init`) rather than refused.
    Private {
        data_dir: PathBuf,
        serving: bool,
        may_create: bool,
    },
}

impl DatabaseSource {
    /// `DATABASE_URL` when set and non-empty, else the private cluster of `data_dir`.
    pub fn from_settings(database_url: Option<String>, data_dir: PathBuf) -> Self {
        match database_url.filter(|url| !url.trim().is_empty()) {
            Some(url) => Self::Url(url),
            None => Self::Private {
                data_dir,
                serving: false,
                may_create: false,
            },
        }
    }

    /// The source as `roster serve` opens it: the owner of a private
    /// cluster, which it creates on the first start (zero configuration).
    pub fn for_server(self) -> Self {
        match self {
            Self::Private { data_dir, .. } => Self::Private {
                data_dir,
                serving: true,
                may_create: true,
            },
            url => url,
        }
    }

    /// The source as an admin command opens it: a missing private cluster
    /// is created only when `init` (`--init`) asks for it.
    pub fn for_admin_command(self, init: bool) -> Self {
        match self {
            Self::Private { data_dir, .. } => Self::Private {
                data_dir,
                serving: false,
                may_create: init,
            },
            url => url,
        }
    }
}

pub struct Database {
    pub pool: store::Pool,
    cluster: Option<PrivateCluster>,
}

impl Database {
    pub async fn open(source: DatabaseSource, max_connections: u32) -> Result<Self> {
        let (options, cluster, hosts) = match source {
            DatabaseSource::Url(url) => {
                let hosts = DatabaseHosts::parse(&url)?;
                let options = if hosts.is_choice() {
                    hosts.find().await?
                } else {
                    hosts.candidates[0].clone()
                };
                (options, None, Some(hosts))
            }
            DatabaseSource::Private {
                data_dir,
                serving,
                may_create,
            } => {
                let cluster = tokio::task::spawn_blocking(move || {
                    let options = ClusterOptions {
                        serving,
                        existing_only: !may_create,
                        ..ClusterOptions::default()
                    };
                    PrivateCluster::start_or_attach(&data_dir, options)
                })
                .await??;
                ensure_database(&cluster, PRIVATE_DATABASE).await?;
                (
                    cluster.connect_options(PRIVATE_DATABASE),
                    Some(cluster),
                    None,
                )
            }
        };
        let writes_only = hosts.as_ref().is_some_and(DatabaseHosts::requires_writes);
        let mut pool_options = pool_options(max_connections);
        let moves = store::connections::HostMoves::new();
        if hosts.as_ref().is_some_and(DatabaseHosts::is_choice) {
            pool_options = moves.pool_options(pool_options);
        }
        if writes_only {
            // A host demoted after it was chosen must not hand out sessions.
            pool_options = pool_options.after_connect(|connection, _| {
                Box::pin(async move {
                    if accepts_writes(connection).await? {
                        Ok(())
                    } else {
                        Err(sqlx::Error::Protocol(
                            "the database host is read-only now (a standby, or a primary being demoted)".into(),
                        ))
                    }
                })
            });
        }
        let pool = pool_options
            .connect_with(options.log_statements(tracing::log::LevelFilter::Debug))
            .await
            .context("cannot connect to PostgreSQL")?;
        store::MIGRATOR
            .run(&pool)
            .await
            .context("cannot apply migrations")?;
        let mut pool = store::Pool::from(pool);
        if let Some(hosts) = hosts {
            pool = pool.with_hosts(hosts, moves);
        }
        Ok(Self { pool, cluster })
    }

    /// True when Roster runs its own private cluster (zero configuration).
    pub fn is_private(&self) -> bool {
        self.cluster.is_some()
    }

    /// Closes the pool and stops the private cluster if this process started it.
    pub async fn close(mut self) -> Result<()> {
        self.pool.close().await;
        if let Some(mut cluster) = self.cluster.take() {
            tokio::task::spawn_blocking(move || cluster.stop()).await??;
        }
        Ok(())
    }
}

/// Connections are handed out untested: a ping before each would be a round
/// trip per statement. Reads find a dead one themselves and run again
/// (`store::connections`), after which connections idle since are tested.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(store::connections::test_if_idle_since_a_loss)
}

/// Creates `database` in the cluster unless it exists (a concurrent creator may win).
pub async fn ensure_database(cluster: &PrivateCluster, database: &str) -> Result<()> {
    let admin = pool_options(1)
        .connect_with(cluster.connect_options("postgres"))
        .await
        .context("cannot connect to the private PostgreSQL cluster")?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(database)
            .fetch_one(&admin)
            .await?;
    if !exists {
        let created = sqlx::query(&format!("create database \"{database}\""))
            .execute(&admin)
            .await;
        if let Err(error) = created {
            if !store::error::is_duplicate_database(&error) {
                return Err(error.into());
            }
        }
    }
    admin.close().await;
    Ok(())
}
