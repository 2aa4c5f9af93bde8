//! `S3Sink::new` with credentials from the process environment, as the binaries run it: the
//! standard AWS credential chain (here: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`), with the
//! endpoint and path-style settings of a plain `S3Config` (the `BACKUP_S3_*` variables are
//! mapped onto it by `backup_core::config::S3Settings`, tested there and end to end), and
//! checksums only where S3 requires them.
//!
//! The only test in its binary, because it sets process environment variables.
#![cfg(feature = "s3")]

use backup_storage::{S3Config, S3Sink, Sink};
use backup_testkit::S3Server;
use bytes::Bytes;

#[tokio::test]
async fn sink_from_environment_uses_the_credential_chain() {
    let server = S3Server::start().await.unwrap();
    server.create_bucket("env-bucket").await.unwrap();
    for name in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        std::env::remove_var(name);
    }
    for (name, value) in server.env("env-bucket") {
        std::env::set_var(name, value);
    }
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/aws-config");
    std::env::set_var(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/aws-credentials",
    );
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");

    let mut config = S3Config::new("env-bucket");
    config.prefix = Some("from-env".to_owned());
    config.endpoint = Some(server.endpoint());
    config.force_path_style = true;
    let sink = S3Sink::new(config).await.unwrap();
    assert_eq!(
        sink.describe(),
        format!(
            "s3://env-bucket/from-env (endpoint {}, region us-east-1)",
            server.endpoint()
        )
    );

    server.clear_requests();
    sink.put("a/b.txt", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(sink.get_bytes("a/b.txt", 100).await.unwrap(), "hello");
    assert_eq!(sink.list("a/").await.unwrap().len(), 1);
    sink.delete_many(&["a/b.txt".to_owned()]).await.unwrap();
    assert!(sink.list("").await.unwrap().is_empty());

    let puts = server.requests_of("PutObject");
    assert_eq!(puts.len(), 1);
    let put = &puts[0];
    assert_eq!(put.status, Some(200));
    assert_eq!(
        put.path, "/env-bucket/from-env/a/b.txt",
        "path-style addressing"
    );
    assert_eq!(put.header("x-amz-server-side-encryption"), Some("AES256"));
    // Checksums only when required: none on PutObject (third-party servers reject them)...
    let checksums: Vec<&String> = put
        .headers
        .keys()
        .filter(|name| name.starts_with("x-amz-checksum") || *name == "x-amz-trailer")
        .collect();
    assert!(checksums.is_empty(), "{checksums:?}");
    // ...and the request was signed with the credentials from the environment.
    assert!(server
        .requests()
        .iter()
        .all(|request| request.status.is_some_and(|status| status < 300)));
}
