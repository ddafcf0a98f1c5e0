//! WatchChanges: every committed change once, in commit order, resumable,
//! bounded by its retention window, and only while the caller may watch.

use std::time::Duration;

use roster::proto::{
    self, watch_changes_request::Start, watch_changes_response::Event, ChangeKind, ChangeOperation,
    UnitScope, UserStatus,
};
use tonic::{Code, Status, Streaming};
use uuid::Uuid;

use crate::{
    groups::{self, give},
    helpers::{error_reason, eventually, violated_fields, Bearer, TestApp},
    import,
};

/// A watch from `start`, answering its first error as the call's.
async fn watch(
    client: &mut proto::change_service_client::ChangeServiceClient<crate::helpers::Authed>,
    start: Option<Start>,
) -> Result<Streaming<proto::WatchChangesResponse>, Status> {
    let request = proto::WatchChangesRequest {
        start,
        ..Default::default()
    };
    Ok(client.watch_changes(request).await?.into_inner())
}

/// The next change, skipping heartbeats; `None` when `within` passes first.
async fn next_change(
    stream: &mut Streaming<proto::WatchChangesResponse>,
    within: Duration,
) -> Result<Option<proto::Change>, Status> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return Ok(None),
            Ok(message) => match message?.and_then(|m| m.event) {
                Some(Event::Change(change)) => return Ok(Some(change)),
                Some(Event::Heartbeat(_)) => continue,
                None => return Err(Status::unknown("the stream ended")),
            },
        }
    }
}

/// (action, resource) of the changes the database numbered, in position order.
async fn numbered(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "select action, resource_id from changes where organization_id = $1 order by position",
    )
    .bind(app.organization_id)
    .fetch_all(&app.pool)
    .await
    .expect("changes")
}

/// (action, target) of the audit records the stream must carry, sorted.
async fn audited_changes(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "select action, target_id from audit_events where organization_id = $1 \
         and action not in ('user.export', 'user.password_reset.send') and action not like 'api_key.%' \
         order by action, target_id",
    )
    .bind(app.organization_id)
    .fetch_all(&app.pool)
    .await
    .expect("audit events")
}

/// A user created through `users` (of whichever server); their id.
async fn create_user(
    users: &mut proto::user_service_client::UserServiceClient<crate::helpers::Authed>,
    email: &str,
) -> String {
    let user = proto::User {
        first_name: "Ana".into(),
        last_name: "Souza".into(),
        email: email.into(),
        ..Default::default()
    };
    let request = proto::CreateUserRequest {
        user: Some(user),
        ..Default::default()
    };
    let created = users.create_user(request).await.unwrap().into_inner();
    created.user.unwrap().id
}

#[tokio::test]
async fn concurrent_writers_on_two_replicas_and_an_import_reach_a_watcher_resuming_on_either_once_in_commit_order(
) {
    let app = TestApp::spawn().await;
    let replica = app.replica(|_| {}).await;
    let o = groups::org(&app).await;
    let cashiers = groups::cashiers_on_south(&app, &o, "Cashiers").await;

    let writer_a = {
        let mut users = app.users(app.as_admin());
        async move {
            for i in 0..25 {
                let user_id = create_user(&mut users, &format!("alpha.{i}@acme.test")).await;
                users
                    .set_user_status(proto::SetUserStatusRequest {
                        user_id,
                        status: UserStatus::Inactive as i32,
                    })
                    .await
                    .unwrap();
            }
        }
    };
    let writer_b = {
        let mut users = replica.users(app.as_admin());
        let cashiers = cashiers.clone();
        async move {
            for i in 0..25 {
                let user_id = create_user(&mut users, &format!("beta.{i}@acme.test")).await;
                users
                    .add_user_to_groups(proto::AddUserToGroupsRequest {
                        user_id,
                        group_ids: vec![cashiers.clone()],
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        }
    };
    let file: String = std::iter::once("first_name,last_name,email\n".to_owned())
        .chain((0..300).map(|i| format!("Caio,Gamma {i},gamma.{i}@acme.test\n")))
        .collect();
    let writer_c = async {
        let run = import::import(&app, import::options(), &file).await;
        assert!(run.error.is_none(), "{:?}", run.error);
    };

    // The watcher reads a few changes at a time, drops its stream and
    // resumes from the last cursor on the other server, while the writers run.
    let watcher = async {
        let mut clients = [app.changes(app.as_admin()), replica.changes(app.as_admin())];
        let mut received: Vec<proto::Change> = Vec::new();
        let mut start = Some(Start::FromBeginning(true));
        let (mut idle_rounds, mut round) = (0, 0);
        while idle_rounds < 3 {
            let client = &mut clients[round % 2];
            round += 1;
            let mut stream = watch(client, start.clone()).await.unwrap();
            let mut got = 0;
            while got < 37 {
                match next_change(&mut stream, Duration::from_secs(2))
                    .await
                    .unwrap()
                {
                    Some(change) => {
                        start = Some(Start::AfterCursor(change.cursor.clone()));
                        received.push(change);
                        got += 1;
                    }
                    None => break,
                }
            }
            idle_rounds = if got == 0 { idle_rounds + 1 } else { 0 };
        }
        received
    };
    let ((), (), (), received) = tokio::join!(writer_a, writer_b, writer_c, watcher);

    let as_pairs: Vec<(String, String)> = received
        .iter()
        .map(|c| (c.action.clone(), c.resource_id.clone()))
        .collect();
    assert_eq!(
        as_pairs,
        numbered(&app).await,
        "the stream is the numbered changes, in order"
    );
    let mut sorted = as_pairs.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        audited_changes(&app).await,
        "every recorded change once"
    );
    assert!(received.len() > 25 * 4 + 300, "{} changes", received.len());
    // Positions are taken under a lock held to the commit, and the commit
    // time is read under it: commit order shows as never-decreasing times.
    let times: Vec<(i64, i32)> = received
        .iter()
        .map(|c| {
            let t = c.commit_time.unwrap();
            (t.seconds, t.nanos)
        })
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "commit order"
    );
    // Each user's own changes come in the order they were made.
    let deactivated = received
        .iter()
        .filter(|c| c.action == "user.status.set")
        .count();
    assert_eq!(deactivated, 25);
    for change in received.iter().filter(|c| c.action == "user.status.set") {
        let created = received
            .iter()
            .position(|c| c.action == "user.create" && c.resource_id == change.resource_id)
            .unwrap();
        let set = received
            .iter()
            .position(|c| c.cursor == change.cursor)
            .unwrap();
        assert!(created < set);
        let access = change
            .user_access
            .as_ref()
            .expect("a user's change carries access");
        assert!(!access.can_sign_in);
        assert_eq!(access.status, UserStatus::Inactive as i32);
    }
    let membership = received
        .iter()
        .find(|c| c.kind == ChangeKind::Membership as i32)
        .unwrap();
    assert_eq!(membership.group_ids, vec![cashiers]);
    assert_eq!(membership.operation, ChangeOperation::Updated as i32);
}

#[tokio::test]
async fn a_watch_from_now_sends_later_changes_with_access_heartbeats_and_filters() {
    let app = TestApp::spawn().await;
    let earlier = app.create_user("Old", "Timer", "old@acme.test").await;
    let mut client = app.changes(app.as_admin());
    let mut stream = watch(&mut client, None).await.unwrap();
    // At once, a heartbeat with where the stream starts: resuming from it
    // is resuming from this "now".
    let first = tokio::time::timeout(Duration::from_secs(3), stream.message())
        .await
        .expect("a heartbeat at once")
        .unwrap()
        .unwrap();
    let Some(Event::Heartbeat(heartbeat)) = first.event else {
        panic!("expected a heartbeat first, got {first:?}");
    };

    let o = groups::org(&app).await;
    let viewers = groups::group(&app, "Viewers", &o.viewer_profile, UnitScope::AllUnits, &[]).await;
    let user = app.create_user("Ana", "Souza", "ana@acme.test").await;
    app.onboard(&user.id).await;
    give(&app, app.as_admin(), &user.id, &[&viewers])
        .await
        .unwrap();
    let mut kinds = Vec::new();
    let mut last = None;
    while let Some(change) = next_change(&mut stream, Duration::from_secs(2))
        .await
        .unwrap()
    {
        assert_ne!(
            change.resource_id, earlier.id,
            "nothing from before the watch"
        );
        kinds.push((change.kind, change.operation));
        last = Some(change);
    }
    assert_eq!(
        kinds,
        [
            (ChangeKind::Profile as i32, ChangeOperation::Created as i32),
            (ChangeKind::Unit as i32, ChangeOperation::Created as i32),
            (ChangeKind::Unit as i32, ChangeOperation::Created as i32),
            (ChangeKind::Group as i32, ChangeOperation::Created as i32),
            (ChangeKind::User as i32, ChangeOperation::Created as i32),
            (
                ChangeKind::Membership as i32,
                ChangeOperation::Updated as i32
            ),
        ]
    );
    let given = last.unwrap();
    let access = given.user_access.expect("access");
    assert!(access.can_sign_in, "onboarded and active: {access:?}");
    assert_eq!(access.grants.len(), 1);
    assert_eq!(access.grants[0].group_id, viewers);
    assert_eq!(given.actor_kind, proto::ActorKind::ApiKey as i32);
    assert!(!given.request_id.is_empty());

    // Resuming from the heartbeat replays exactly those, filtered.
    let filtered = client
        .watch_changes(proto::WatchChangesRequest {
            start: Some(Start::AfterCursor(heartbeat.cursor)),
            kinds: vec![ChangeKind::User as i32, ChangeKind::Membership as i32],
            user_ids: vec![user.id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut filtered = filtered;
    let mut seen = Vec::new();
    while let Some(change) = next_change(&mut filtered, Duration::from_secs(2))
        .await
        .unwrap()
    {
        seen.push((change.kind, change.resource_id));
    }
    assert_eq!(
        seen,
        [
            (ChangeKind::User as i32, user.id.clone()),
            (ChangeKind::Membership as i32, user.id.clone()),
        ]
    );
}

#[tokio::test]
async fn bad_starts_are_refused_and_a_cursor_past_the_window_is_out_of_range() {
    let app = TestApp::spawn().await;
    let mut client = app.changes(app.as_admin());
    app.create_user("Ana", "Souza", "ana@acme.test").await;
    let mut stream = watch(&mut client, Some(Start::FromBeginning(true)))
        .await
        .unwrap();
    let first = next_change(&mut stream, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    drop(stream);

    for garbage in ["", "not a cursor", "AAAA", &first.cursor[2..]] {
        let refused = watch(&mut client, Some(Start::AfterCursor(garbage.into())))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{garbage}");
        assert_eq!(violated_fields(&refused), ["after_cursor"]);
    }
    for (kinds, user_ids, fields) in [
        (
            vec![0],
            vec!["nope".to_owned()],
            vec!["kinds[0]", "user_ids[0]"],
        ),
        (vec![2, 99], Vec::new(), vec!["kinds[1]"]),
        (
            Vec::new(),
            vec![Uuid::nil().to_string(); 1001],
            vec!["user_ids"],
        ),
    ] {
        let refused = client
            .watch_changes(proto::WatchChangesRequest {
                kinds,
                user_ids,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&refused), fields);
    }

    // Another organization's cursor is not a position of this one.
    let other = app.create_organization("globex").await;
    let other_key = app
        .create_api_key(other, "watcher", &[roster::domain::caller::Scope::Viewer])
        .await;
    let refused = watch(
        &mut app.changes(Bearer::token(&other_key)),
        Some(Start::AfterCursor(first.cursor.clone())),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("another organization"),
        "{}",
        refused.message()
    );

    // Pruned past the window (as the sweep does), then a later change: the old cursor is gone.
    roster::store::changes::prune(
        &app.store,
        chrono::Utc::now() + chrono::Duration::seconds(1),
    )
    .await
    .unwrap();
    let bia = app.create_user("Bia", "Lima", "bia@acme.test").await;
    let mut stream = watch(&mut client, Some(Start::AfterCursor(first.cursor.clone())))
        .await
        .unwrap();
    let refused = next_change(&mut stream, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{}", refused.message());
    assert!(
        refused.message().contains("resynchronize"),
        "{}",
        refused.message()
    );
    assert_eq!(
        error_reason(&refused).as_deref(),
        Some("CURSOR_OUT_OF_RANGE")
    );
    // From the beginning starts at what is still kept.
    let mut stream = watch(&mut client, Some(Start::FromBeginning(true)))
        .await
        .unwrap();
    let kept = next_change(&mut stream, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (kept.action.as_str(), kept.resource_id),
        ("user.create", bia.id)
    );
    // A cursor ahead of every change (a restored database, say) is out of range too.
    let ahead = roster::domain::changes::Cursor {
        organization_id: app.organization_id,
        position: 1_000_000,
    };
    let refused = watch(&mut client, Some(Start::AfterCursor(ahead.encode())))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{}", refused.message());
}

/// The stream's end: the error it ends with, within a few seconds.
async fn ended_with(mut stream: Streaming<proto::WatchChangesResponse>) -> Status {
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Err(status) = stream.message().await {
                return status;
            }
        }
    });
    ended.await.expect("the stream ends within 5 s")
}

#[tokio::test]
async fn revoking_the_key_ends_its_streams() {
    let app = TestApp::spawn().await;
    let key = app
        .create_api_key(
            app.organization_id,
            "cache",
            &[roster::domain::caller::Scope::Viewer],
        )
        .await;
    let mut client = app.changes(Bearer::token(&key));
    let stream = watch(&mut client, None).await.unwrap();
    let keys = app
        .auth(app.as_admin())
        .list_api_keys(proto::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    let cache = keys.iter().find(|k| k.name == "cache").unwrap();
    app.auth(app.as_admin())
        .revoke_api_key(proto::RevokeApiKeyRequest {
            api_key_id: cache.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(ended_with(stream).await.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_user_watches_only_while_they_may_sign_in() {
    let app = TestApp::spawn().await;
    let o = groups::org(&app).await;
    let viewers = groups::group(&app, "Viewers", &o.viewer_profile, UnitScope::AllUnits, &[]).await;
    let (user, bearer) = groups::holder(&app, "viewer@acme.test", &[&viewers]).await;
    let mut client = app.changes(bearer);
    let mut stream = watch(&mut client, None).await.unwrap();
    let bia = app.create_user("Bia", "Lima", "bia@acme.test").await;
    let seen = next_change(&mut stream, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.resource_id, bia.id);
    app.users(app.as_admin())
        .set_user_status(proto::SetUserStatusRequest {
            user_id: user.id,
            status: UserStatus::Inactive as i32,
        })
        .await
        .unwrap();
    assert_eq!(ended_with(stream).await.code(), Code::Unauthenticated);
    // A user with no VIEWER scope may not watch at all.
    let (_, nobody) = app.signed_in_user("nobody@acme.test").await;
    let refused = watch(&mut app.changes(nobody), None).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_stopping_server_ends_its_streams_at_once_for_the_consumer_to_resume_elsewhere() {
    let mut app = TestApp::spawn().await;
    let stream = watch(&mut app.changes(app.as_admin()), None).await.unwrap();
    let ended = tokio::spawn(ended_with(stream));
    app.stop_server().await;
    let status = ended.await.unwrap();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    assert!(status.message().contains("resume"), "{}", status.message());
}

#[tokio::test]
async fn a_server_serves_its_most_streams_and_takes_more_as_others_end() {
    let app = TestApp::spawn_with(|settings| settings.changes.max_streams = 2).await;
    let mut client = app.changes(app.as_admin());
    let first = watch(&mut client, None).await.unwrap();
    let _second = watch(&mut client, None).await.unwrap();
    let refused = watch(&mut client, None).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::ResourceExhausted,
        "{}",
        refused.message()
    );
    drop(first);
    eventually("a slot is given back", Duration::from_secs(5), || {
        let mut client = client.clone();
        async move { watch(&mut client, None).await.ok() }
    })
    .await;
}
