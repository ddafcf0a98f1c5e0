//! The read lane (issue 15): reads keep their connections between calls
//! without sqlx's ping on release, and a read that did not end cleanly
//! leaves no connection behind that could answer another call.

use std::time::Duration;

use roster::{
    database::pool_options,
    domain::user::LookupKey,
    proto::{self, UnitScope},
    store,
};
use sqlx::{postgres::PgConnectOptions, Connection, PgConnection};
use tonic::Code;
use uuid::Uuid;

use crate::{
    groups::{cashiers_on_south_with_a_member, give, group},
    helpers::{RunningServer, TestApp},
    socket_proxy::SocketProxy,
};

/// A proxy in front of the suite's cluster and the options that reach it.
pub(crate) async fn proxied(app: &TestApp) -> (SocketProxy, PgConnectOptions) {
    let options = (*app.pool.connect_options()).clone();
    let directory = options
        .get_socket()
        .expect("the suite's cluster is reached by its socket");
    let socket = directory.join(format!(".s.PGSQL.{}", options.get_port()));
    let proxy = SocketProxy::start(socket).await;
    // New options: the suite's name a socket, which would win over a host.
    let through_proxy = PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(proxy.port)
        .username(options.get_username())
        .database(options.get_database().expect("a database"));
    (proxy, through_proxy)
}

/// The users table locked until the transaction ends: every read of a user
/// waits in PostgreSQL meanwhile.
pub(crate) async fn users_locked(app: &TestApp) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("lock table users in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    lock
}

#[tokio::test]
async fn a_read_hands_its_connection_back_without_another_round_trip() {
    const READS: usize = 60;
    let app = TestApp::spawn().await;
    let user = app.create_user("Ana", "Lane", "ana.lane@acme.com").await;
    let (proxy, options) = proxied(&app).await;
    let pool = pool_options(8).connect_with(options).await.unwrap();
    // No email worker: its polls would go through the proxy too.
    let server = RunningServer::start(&pool, &app.mail, |settings| settings.delivery = None).await;
    let mut users = server.users(app.as_admin());
    let get = proto::GetUserRequest {
        user_id: user.id.clone(),
        ..Default::default()
    };
    users.get_user(get.clone()).await.unwrap();
    // The key's first use is written within a second; then the reads alone.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let before = proxy.syncs();
    for _ in 0..READS {
        users.get_user(get.clone()).await.unwrap();
    }
    let syncs = proxy.syncs() - before;
    // One statement per read: one Sync each. sqlx's pool would send a second
    // (its ping on release). The database watch's probes add a few.
    assert!(
        (READS..READS + READS / 4).contains(&syncs),
        "{syncs} Sync messages for {READS} reads"
    );
}

#[tokio::test]
async fn a_read_cancelled_while_it_waits_leaves_no_connection_answering_another_call() {
    let app = TestApp::spawn().await;
    let first = app.create_user("Ana", "First", "ana.first@acme.com").await;
    let second = app
        .create_user("Bia", "Second", "bia.second@acme.com")
        .await;
    // Asked for by the cancelled reads only: an answer of theirs given to a
    // later read would show as this id.
    let cancelled_for = app
        .create_user("Cid", "Cancelled", "cid.cancelled@acme.com")
        .await;
    // A lane of two connections (half of four), which the later reads use.
    let pool = pool_options(4)
        .connect_with((*app.pool.connect_options()).clone())
        .await
        .unwrap();
    let server = RunningServer::start(&pool, &app.mail, |settings| settings.delivery = None).await;
    let get = |id: &str, deadline: Option<Duration>| {
        let mut request = tonic::Request::new(proto::GetUserRequest {
            user_id: id.to_owned(),
            ..Default::default()
        });
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        let mut users = server.users(app.as_admin());
        async move { users.get_user(request).await }
    };
    get(&first.id, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The users table locked: both reads wait in PostgreSQL and are
    // cancelled by their deadlines while their statements are under way.
    let lock = users_locked(&app).await;
    let (a, b) = tokio::join!(
        get(&cancelled_for.id, Some(Duration::from_millis(300))),
        get(&cancelled_for.id, Some(Duration::from_millis(300)))
    );
    for cancelled in [a, b] {
        // tonic's client ends the call itself at the deadline.
        let code = cancelled.unwrap_err().code();
        assert!(
            matches!(code, Code::DeadlineExceeded | Code::Cancelled),
            "{code:?}"
        );
    }
    lock.rollback().await.unwrap();

    // Every later read gets its own answer, never the cancelled ones'.
    for _ in 0..10 {
        let (a, b) = tokio::join!(get(&second.id, None), get(&first.id, None));
        assert_eq!(a.unwrap().into_inner().user.unwrap().id, second.id);
        assert_eq!(b.unwrap().into_inner().user.unwrap().id, first.id);
    }
}

/// The statements of the calls internal services make on every request of
/// theirs run on a plan PostgreSQL keeps per connection, not one made
/// afresh per call (planning costs more than running them). `any($2)` of a
/// one-element array was planned afresh every time: PostgreSQL plans a
/// parameter's array for ten elements, finds that dearer than the one-user
/// plan, and so never keeps it.
#[tokio::test]
async fn the_statements_of_the_hot_reads_are_planned_once_per_connection() {
    const CALLS: i64 = 10;
    let (app, o, _, member) = cashiers_on_south_with_a_member().await;
    let everywhere = group(&app, "Viewers", &o.viewer_profile, UnitScope::AllUnits, &[]).await;
    give(&app, app.as_admin(), &member, &[&everywhere])
        .await
        .unwrap();
    let id: Uuid = member.parse().unwrap();
    let organization = app.organization_id;
    // Plans are chosen by estimates: a directory of some size, analyzed.
    sqlx::query(
        "insert into users (organization_id, id, first_name, last_name, email, username, search_key, last_name_key) \
         select $1, gen_random_uuid(), 'Bulk', 'User ' || i, 'bulk' || i || '@acme.com', 'bulk' || i, 'bulk', 'user' \
         from generate_series(1, 20000) i",
    )
    .bind(organization)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into memberships (organization_id, user_id, group_id) \
         select u.organization_id, u.id, g.id from users u, groups g \
         where u.organization_id = $1 and u.first_name = 'Bulk' and g.organization_id = $1",
    )
    .bind(organization)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("analyze").execute(&app.pool).await.unwrap();
    let batch: Vec<Uuid> = sqlx::query_scalar(
        "select id from users where organization_id = $1 and first_name = 'Bulk' limit 100",
    )
    .bind(organization)
    .fetch_all(&app.pool)
    .await
    .unwrap();

    // A connection of its own: only these statements are prepared on it.
    let mut connection = PgConnection::connect_with(&app.pool.connect_options())
        .await
        .unwrap();
    for call in 0..CALLS {
        // The shared reads' statements, for two to eight users in turn.
        let some = &batch[..2 + call as usize % 7];
        let found = store::users::find_in_slots(&mut connection, organization, some).await;
        assert_eq!(found.unwrap().len(), some.len());
        let access = store::groups::status_and_access_in_slots(&mut connection, organization, some);
        assert_eq!(access.await.unwrap().len(), some.len());
        let found = store::users::find(&mut connection, organization, id).await;
        assert!(found.unwrap().is_some());
        // LookupUser's, by each kind of key: emails, usernames in another
        // case, external ids nobody has.
        let values = |value: fn(usize) -> String| (1..=some.len()).map(value).collect::<Vec<_>>();
        let emails = values(|i| format!("bulk{i}@acme.com"));
        let usernames = values(|i| format!("BULK{i}"));
        let external_ids = values(|i| format!("none-{i}"));
        for (keys, each_finds) in [
            (
                emails
                    .iter()
                    .map(|v| LookupKey::Email(v))
                    .collect::<Vec<_>>(),
                1,
            ),
            (
                usernames.iter().map(|v| LookupKey::Username(v)).collect(),
                1,
            ),
            (
                external_ids
                    .iter()
                    .map(|v| LookupKey::ExternalId(v))
                    .collect(),
                0,
            ),
        ] {
            let found = store::users::lookup_in_slots(&mut connection, organization, &keys).await;
            let found = found.unwrap();
            assert_eq!(found.len(), keys.len());
            assert!(found.iter().all(|users| users.len() == each_finds));
        }
        let found = store::users::lookup(
            &mut connection,
            organization,
            LookupKey::Email("carla@acme.test"),
        );
        assert_eq!(found.await.unwrap().len(), 1);
        let found = store::users::find_many(&mut connection, organization, &[id]).await;
        assert_eq!(found.unwrap().len(), 1);
        let found = store::users::find_many(&mut connection, organization, &batch).await;
        assert_eq!(found.unwrap().len(), batch.len());
        let access = store::groups::status_and_access_of_user(&mut connection, organization, id);
        assert_eq!(access.await.unwrap().unwrap().1.len(), 2);
        let grants = store::groups::grants_of_user(&mut connection, organization, id).await;
        assert_eq!(grants.unwrap().len(), 2);
    }
    let plans: Vec<(String, i64, i64)> = sqlx::query_as(
        "select statement, generic_plans, custom_plans from pg_prepared_statements \
         where statement not like '%pg_prepared_statements%'",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    assert_eq!(plans.len(), 10, "{plans:#?}");
    for (statement, generic, custom) in plans {
        assert!(generic + custom >= CALLS, "{statement}");
        // PostgreSQL plans five times before it compares with a kept plan.
        assert!(
            custom <= 5,
            "planned {custom} times of {CALLS}: {statement}"
        );
    }
}
