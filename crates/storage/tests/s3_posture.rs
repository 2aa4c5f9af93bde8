//! `S3Sink::bucket_posture` against the in-process S3 server (s3s + s3s-fs, see
//! backup-testkit): a server that supports none of the bucket-configuration requests gives
//! `Unknown` for every question (never `Absent`, never a panic); versioning and Object Lock a
//! test sets are read back as S3 would report them.
#![cfg(feature = "s3")]
// Clippy's allow-unwrap-in-tests covers `#[test]` functions only, not this file's helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use backup_storage::s3::{BucketPosture, ObjectLockSettings, Probe};
use backup_storage::{S3Config, S3Sink};
use backup_testkit::S3Server;

const BUCKET: &str = "backups";

async fn server() -> S3Server {
    let server = S3Server::start().await.unwrap();
    server.create_bucket(BUCKET).await.unwrap();
    server
}

fn sink(server: &S3Server, bucket: &str) -> S3Sink {
    let mut config = S3Config::new(bucket);
    config.prefix = Some("db".to_owned());
    S3Sink::with_client(server.client(), config).unwrap()
}

/// The reason of an unknown probe; panics on any other.
fn unknown<T: std::fmt::Debug>(probe: &Probe<T>, what: &str) -> String {
    match probe {
        Probe::Unknown(why) => why.clone(),
        other => panic!("{what}: expected Unknown, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plain_bucket_on_a_limited_server_is_unknown_everywhere() {
    let server = server().await;
    let posture = sink(&server, BUCKET).bucket_posture().await;
    let BucketPosture {
        encryption,
        public_access_block,
        policy,
        policy_is_public,
        versioning,
        object_lock,
        lifecycle,
    } = &posture;
    for (what, why) in [
        ("encryption", unknown(encryption, "encryption")),
        (
            "public access block",
            unknown(public_access_block, "public access block"),
        ),
        ("policy", unknown(policy, "policy")),
        ("policy status", unknown(policy_is_public, "policy status")),
        ("versioning", unknown(versioning, "versioning")),
        ("object lock", unknown(object_lock, "object lock")),
        ("lifecycle", unknown(lifecycle, "lifecycle")),
    ] {
        assert!(
            why.contains("does not support") && why.contains("NotImplemented"),
            "{what}: {why}"
        );
    }
    // One request per question, each named by the server's request log.
    for operation in [
        "GetBucketEncryption",
        "GetPublicAccessBlock",
        "GetBucketPolicy",
        "GetBucketPolicyStatus",
        "GetBucketVersioning",
        "GetObjectLockConfiguration",
        "GetBucketLifecycleConfiguration",
    ] {
        let requests = server.requests_of(operation);
        assert_eq!(requests.len(), 1, "{operation}: {:?}", server.requests());
        assert_eq!(requests[0].status, Some(501), "{operation}");
        assert_eq!(requests[0].bucket().as_deref(), Some(BUCKET));
    }
}

#[tokio::test]
async fn versioning_and_object_lock_set_by_a_test_are_known() {
    let server = server().await;
    let sink = sink(&server, BUCKET);

    server.set_bucket_versioning(BUCKET, "Suspended");
    let posture = sink.bucket_posture().await;
    assert_eq!(
        posture.versioning,
        Probe::Known(Some("Suspended".to_owned()))
    );
    // The bucket now answers about Object Lock, as S3 does for a bucket without it.
    assert_eq!(posture.object_lock, Probe::Absent);
    // The rest is still unsupported.
    assert!(posture.encryption.is_unknown());
    assert!(posture.lifecycle.is_unknown());

    server.set_bucket_versioning(BUCKET, "Enabled");
    server.set_object_lock_enabled(BUCKET, true);
    let posture = sink.bucket_posture().await;
    assert_eq!(posture.versioning, Probe::Known(Some("Enabled".to_owned())));
    assert_eq!(
        posture.object_lock,
        Probe::Known(ObjectLockSettings {
            enabled: true,
            default_mode: None,
            default_days: None,
        })
    );

    server.set_object_lock_enabled(BUCKET, false);
    assert_eq!(sink.bucket_posture().await.object_lock, Probe::Absent);
}

#[tokio::test]
async fn object_lock_implies_versioning_and_put_bucket_versioning_works() {
    let server = server().await;
    server.create_bucket("locked").await.unwrap();
    server.create_bucket("other").await.unwrap();

    server.set_object_lock_enabled("locked", true);
    let posture = sink(&server, "locked").bucket_posture().await;
    assert_eq!(posture.versioning, Probe::Known(Some("Enabled".to_owned())));
    assert_eq!(
        posture.object_lock.known().map(|lock| lock.enabled),
        Some(true)
    );
    // Settings are per bucket.
    assert!(sink(&server, BUCKET)
        .bucket_posture()
        .await
        .versioning
        .is_unknown());

    // A bucket versioning was never enabled on has no status.
    server.set_object_lock_enabled("other", false);
    assert_eq!(
        sink(&server, "other").bucket_posture().await.versioning,
        Probe::Known(None)
    );

    // Through the S3 API too.
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    server
        .client()
        .put_bucket_versioning()
        .bucket(BUCKET)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(server.requests_of("PutBucketVersioning").len(), 1);
    assert_eq!(
        sink(&server, BUCKET).bucket_posture().await.versioning,
        Probe::Known(Some("Enabled".to_owned()))
    );
}

#[tokio::test]
async fn a_missing_bucket_or_an_unreachable_server_is_unknown() {
    let server = server().await;
    server.set_bucket_versioning("missing", "Enabled");
    let posture = sink(&server, "missing").bucket_posture().await;
    let why = unknown(&posture.versioning, "versioning of a missing bucket");
    assert!(why.contains("does not exist"), "{why}");

    let client = server.client();
    drop(server);
    let posture = S3Sink::with_client(client, S3Config::new(BUCKET))
        .unwrap()
        .bucket_posture()
        .await;
    for why in [
        unknown(&posture.encryption, "encryption"),
        unknown(&posture.versioning, "versioning"),
        unknown(&posture.lifecycle, "lifecycle"),
    ] {
        assert!(why.contains("failed"), "{why}");
    }
}
