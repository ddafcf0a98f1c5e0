//! A `DATABASE_URL` naming several hosts, as libpq and `pg_autoctl show uri`
//! write it (`postgres://roster@a:5432,b:5433/roster?target_session_attrs=read-write`):
//! sqlx takes one host, so Roster tries the hosts in order itself and
//! connects to the first that answers — with `read-write`, the first that
//! accepts writes. A node accepts writes when its sessions are not read-only
//! (`transaction_read_only`): a freshly promoted primary leaves recovery
//! (`pg_is_in_recovery()`) seconds before that, and writes sent to it then
//! are refused.

use anyhow::{bail, Context, Result};
use sqlx::{
    postgres::{PgConnectOptions, PgConnection},
    ConnectOptions, Connection,
};

/// Which node a connection may use (libpq's `target_session_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTarget {
    /// The first host that answers.
    Any,
    /// The first host whose sessions may write (`read-write`, `primary`).
    ReadWrite,
}

/// The hosts of a `DATABASE_URL`, in order, each as a connection of its own:
/// listed in the URL's authority (`a:5432,b:5433`) or, as libpq also
/// allows, in its `host` parameter (`?host=/run/a,/run/b&port=5432,5433`,
/// socket directories too).
#[derive(Debug, Clone)]
pub struct DatabaseHosts {
    pub candidates: Vec<PgConnectOptions>,
    pub target: SessionTarget,
}

impl DatabaseHosts {
    /// Reads a URL with one or several `host:port` (comma-separated, IPv6 in
    /// brackets; a host without a port takes the last port given, else 5432, as libpq does).
    pub fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
            .context("DATABASE_URL must start with postgres:// or postgresql://")?;
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_end);
        let (user_info, hosts) = match authority.rsplit_once('@') {
            Some((user_info, hosts)) => (Some(user_info), hosts),
            None => (None, authority),
        };
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let mut target = SessionTarget::Any;
        let mut kept_parameters = Vec::new();
        for parameter in query.into_iter().flat_map(|q| q.split('&')) {
            match parameter.split_once('=') {
                Some(("target_session_attrs", value)) => {
                    target = match value {
                        "any" => SessionTarget::Any,
                        "read-write" | "primary" => SessionTarget::ReadWrite,
                        other => bail!(
                            "DATABASE_URL: target_session_attrs={other} is not supported (use read-write or any)"
                        ),
                    }
                }
                _ if parameter.is_empty() => {}
                _ => kept_parameters.push(parameter),
            }
        }
        if let Some(candidates) = query_form(scheme, authority, path, &kept_parameters)? {
            return Ok(Self { candidates, target });
        }
        if !hosts.contains(',') {
            // One host (or a socket directory in the query): sqlx reads it as it is.
            let only = url
                .parse::<PgConnectOptions>()
                .context("DATABASE_URL is not a valid PostgreSQL URL")?;
            return Ok(Self {
                candidates: vec![only],
                target,
            });
        }
        let hosts = split_hosts(hosts)?;
        let query = if kept_parameters.is_empty() {
            String::new()
        } else {
            format!("?{}", kept_parameters.join("&"))
        };
        let user_info = user_info.map(|u| format!("{u}@")).unwrap_or_default();
        let candidates = hosts
            .iter()
            .map(|host| {
                format!("{scheme}://{user_info}{host}{path}{query}")
                    .parse::<PgConnectOptions>()
                    .with_context(|| format!("DATABASE_URL: host {host} is not valid"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { candidates, target })
    }

    /// Whether there is anything to choose: several hosts or a session target.
    pub fn is_choice(&self) -> bool {
        self.candidates.len() > 1 || self.target == SessionTarget::ReadWrite
    }

    /// Whether every session must accept writes (a choice made for writing).
    pub fn requires_writes(&self) -> bool {
        self.is_choice() && self.target == SessionTarget::ReadWrite
    }

    /// The first host that answers and suits the target; the error names
    /// why each was passed over.
    pub async fn find(&self) -> Result<PgConnectOptions> {
        let mut passed_over = Vec::new();
        for candidate in &self.candidates {
            let place = place(candidate);
            match self.suits(candidate).await {
                Ok(true) => return Ok(candidate.clone()),
                Ok(false) => passed_over.push(format!("{place} is read-only")),
                Err(error) => passed_over.push(format!("{place}: {error}")),
            }
        }
        bail!(
            "no database host {}: {}",
            match self.target {
                SessionTarget::Any => "answers",
                SessionTarget::ReadWrite => "accepts writes",
            },
            passed_over.join("; ")
        )
    }

    async fn suits(&self, candidate: &PgConnectOptions) -> Result<bool, sqlx::Error> {
        let connect = async {
            let mut connection = candidate.connect().await?;
            let suits = match self.target {
                SessionTarget::Any => true,
                SessionTarget::ReadWrite => accepts_writes(&mut connection).await?,
            };
            let _ = connection.close().await;
            Ok(suits)
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), connect)
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }
}

/// Where a connection goes, for messages and comparisons: `host:port`, or
/// the socket directory and port.
pub fn place(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => format!("{}:{}", socket.display(), options.get_port()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// Whether this session may write: not a standby, not a primary still
/// finishing its promotion, not a node set read-only.
pub async fn accepts_writes(connection: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let read_only: String = sqlx::query_scalar("show transaction_read_only")
        .fetch_one(connection)
        .await?;
    Ok(read_only == "off")
}

/// The candidates of libpq's other form, hosts in the `host` parameter
/// (`?host=/run/a,/run/b&port=5432,5433`): None when it lists one host or none.
fn query_form(
    scheme: &str,
    authority: &str,
    path: &str,
    parameters: &[&str],
) -> Result<Option<Vec<PgConnectOptions>>> {
    let Some(list) = parameters
        .iter()
        .find_map(|p| p.strip_prefix("host="))
        .filter(|list| list.contains(','))
    else {
        return Ok(None);
    };
    let ports: Vec<&str> = parameters
        .iter()
        .find_map(|p| p.strip_prefix("port="))
        .map(|ports| ports.split(',').collect())
        .unwrap_or_default();
    let others: Vec<&str> = parameters
        .iter()
        .copied()
        .filter(|p| !p.starts_with("host=") && !p.starts_with("port="))
        .collect();
    list.split(',')
        .enumerate()
        .map(|(index, host)| {
            let mut query = others.clone();
            let host = format!("host={host}");
            query.push(&host);
            let port = ports
                .get(index)
                .or(ports.last())
                .map(|p| format!("port={p}"));
            if let Some(port) = &port {
                query.push(port);
            }
            format!("{scheme}://{authority}{path}?{}", query.join("&"))
                .parse::<PgConnectOptions>()
                .with_context(|| format!("DATABASE_URL: {host} is not valid"))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// `a:5432,[::1]:5433,b` → `a:5432`, `[::1]:5433`, `b:5433` (libpq gives a
/// host without a port the port of the next host that has one; with one
/// port list or none it is simplest to give each its own or the default).
fn split_hosts(hosts: &str) -> Result<Vec<String>> {
    let mut split: Vec<(String, Option<String>)> = Vec::new();
    for host in hosts.split(',') {
        let host = host.trim();
        if host.is_empty() {
            bail!("DATABASE_URL: an empty host in the host list");
        }
        let (name, port) = if let Some(bracketed) = host.strip_prefix('[') {
            let (address, after) = bracketed
                .split_once(']')
                .context("DATABASE_URL: an IPv6 host lacks its closing ]")?;
            (format!("[{address}]"), after.strip_prefix(':'))
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) => (name.to_owned(), Some(port)),
                None => (host.to_owned(), None),
            }
        };
        if let Some(port) = port {
            port.parse::<u16>()
                .with_context(|| format!("DATABASE_URL: `{port}` is not a port number"))?;
        }
        split.push((name, port.map(str::to_owned)));
    }
    Ok(split
        .into_iter()
        .map(|(name, port)| match port {
            Some(port) => format!("{name}:{port}"),
            None => format!("{name}:5432"),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(hosts: &DatabaseHosts) -> Vec<(String, u16, String)> {
        hosts
            .candidates
            .iter()
            .map(|c| {
                (
                    c.get_host().to_owned(),
                    c.get_port(),
                    c.get_database().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_uri_pg_autoctl_prints_names_each_node_and_the_write_target() {
        let hosts = DatabaseHosts::parse(
            "postgres://autoctl_node@node-a:5432,node-b:5433/roster?target_session_attrs=read-write&sslmode=prefer",
        )
        .unwrap();
        assert_eq!(hosts.target, SessionTarget::ReadWrite);
        assert_eq!(
            places(&hosts),
            [
                ("node-a".to_owned(), 5432, "roster".to_owned()),
                ("node-b".to_owned(), 5433, "roster".to_owned())
            ]
        );
        assert_eq!(hosts.candidates[1].get_username(), "autoctl_node");
        assert!(hosts.is_choice());
    }

    #[test]
    fn one_host_without_a_target_is_no_choice_and_ipv6_and_default_ports_parse() {
        let one = DatabaseHosts::parse("postgresql://u:p@127.0.0.1:6543/db").unwrap();
        assert!(!one.is_choice());
        assert_eq!(one.target, SessionTarget::Any);
        let hosts = DatabaseHosts::parse("postgres://u@[::1]:6000,db.internal/roster").unwrap();
        assert_eq!(
            places(&hosts)
                .into_iter()
                .map(|(_, port, _)| port)
                .collect::<Vec<_>>(),
            [6000, 5432]
        );
    }

    #[test]
    fn hosts_in_the_host_parameter_take_their_ports_in_order_or_the_last() {
        let hosts = DatabaseHosts::parse(
            "postgresql://u@localhost/roster?host=/run/a,/run/b,/run/c&port=6001,6002&sslmode=disable",
        )
        .unwrap();
        let found: Vec<String> = hosts.candidates.iter().map(place).collect();
        assert_eq!(found, ["/run/a:6001", "/run/b:6002", "/run/c:6002"]);
        assert!(hosts.is_choice());
    }

    #[test]
    fn malformed_host_lists_and_targets_are_refused_saying_what() {
        for (url, says) in [
            ("mysql://a/b", "postgres://"),
            ("postgres://a:5432,,b/db", "empty host"),
            ("postgres://a:54x2,b/db", "`54x2` is not a port"),
            ("postgres://[::1:5432,b/db", "closing ]"),
            (
                "postgres://a,b/db?target_session_attrs=standby",
                "standby is not supported",
            ),
        ] {
            let error = format!("{:#}", DatabaseHosts::parse(url).unwrap_err());
            assert!(error.contains(says), "{url}: {error}");
        }
    }
}
