//! The in-process S3 server: authentication, the request log, fault injection, the S3
//! behaviour it adds to s3s-fs, and shutdown on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_s3::primitives::ByteStream;
use backup_testkit::S3Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server_with_bucket() -> S3Server {
    let server = S3Server::start().await.unwrap();
    server.create_bucket("bkt").await.unwrap();
    server
}

/// Sends a raw HTTP/1.1 request and returns the response's status line.
async fn raw_status_line(endpoint: &str, request: &str) -> String {
    let address = endpoint.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![0; 4096];
    let read = stream.read(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response[..read]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn requests_must_be_signed_with_the_servers_key() {
    let server = server_with_bucket().await;
    assert_eq!(server.region(), "us-east-1");
    assert!(server.endpoint().starts_with("http://127.0.0.1:"));
    assert_ne!(server.access_key(), server.secret_key());
    let status = raw_status_line(
        &server.endpoint(),
        "GET /bkt?list-type=2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(status.contains("403"), "{status}");

    let other = S3Server::start().await.unwrap();
    let error = other
        .client()
        .list_objects_v2()
        .bucket("bkt")
        .send()
        .await
        .map(drop);
    assert!(error.is_err(), "another server's bucket is not here");
    let env = server.env("bkt");
    let get = |name: &str| {
        env.iter()
            .find(|(var, _)| var == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(get("BACKUP_S3_BUCKET"), Some("bkt"));
    assert_eq!(get("BACKUP_S3_ENDPOINT"), Some(server.endpoint().as_str()));
    assert_eq!(get("BACKUP_S3_FORCE_PATH_STYLE"), Some("true"));
    assert_eq!(get("AWS_ACCESS_KEY_ID"), Some(server.access_key()));
    assert_eq!(get("AWS_SECRET_ACCESS_KEY"), Some(server.secret_key()));
    assert_eq!(get("AWS_REGION"), Some("us-east-1"));
}

#[tokio::test]
async fn the_request_log_records_operations_and_headers_but_no_signature() {
    let server = server_with_bucket().await;
    let client = server.client();
    client
        .put_object()
        .bucket("bkt")
        .key("dir/a file ü.txt")
        .storage_class(aws_sdk_s3::types::StorageClass::IntelligentTiering)
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    let put = &server.requests_of("PutObject")[0];
    assert_eq!(put.method, "PUT");
    assert_eq!(put.bucket().as_deref(), Some("bkt"));
    assert_eq!(put.key().as_deref(), Some("dir/a file ü.txt"));
    assert_eq!(
        put.header("X-Amz-Storage-Class"),
        Some("INTELLIGENT_TIERING")
    );
    assert_eq!(put.header("x-amz-server-side-encryption"), Some("AES256"));
    assert_eq!(put.header("authorization"), None);
    assert_eq!(put.status, Some(200));
    assert_eq!(put.fault, None);

    // The storage class s3s-fs does not know was accepted, and the object is there.
    let object = client
        .get_object()
        .bucket("bkt")
        .key("dir/a file ü.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        &object.body.collect().await.unwrap().into_bytes()[..],
        b"hello"
    );

    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn upload_part_faults_and_multipart_listing() {
    let server = server_with_bucket().await;
    let client = server.client();
    let mut ids = Vec::new();
    for key in ["x/1", "x/2", "x/3", "y/1"] {
        let created = client
            .create_multipart_upload()
            .bucket("bkt")
            .key(key)
            .send()
            .await
            .unwrap();
        ids.push(created.upload_id().unwrap().to_owned());
    }

    // Paginated listing under a prefix.
    let page = client
        .list_multipart_uploads()
        .bucket("bkt")
        .prefix("x/")
        .max_uploads(2)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = page.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(keys, ["x/1", "x/2"]);
    assert_eq!(page.is_truncated(), Some(true));
    let rest = client
        .list_multipart_uploads()
        .bucket("bkt")
        .prefix("x/")
        .key_marker(page.next_key_marker().unwrap())
        .upload_id_marker(page.next_upload_id_marker().unwrap())
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = rest.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(keys, ["x/3"]);
    assert_eq!(rest.is_truncated(), Some(false));
    assert!(rest.uploads()[0].initiated().is_some());

    // The second UploadPart fails with a 500, the others succeed.
    server.fail_upload_part(2);
    let upload = |number: i32| {
        client
            .upload_part()
            .bucket("bkt")
            .key("x/1")
            .upload_id(&ids[0])
            .part_number(number)
            .body(ByteStream::from_static(b"part"))
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::default()
                    .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled()),
            )
            .send()
    };
    assert!(upload(1).await.is_ok());
    let error = upload(2).await.unwrap_err();
    assert_eq!(
        error
            .raw_response()
            .map(|response| response.status().as_u16()),
        Some(500)
    );
    assert!(upload(2).await.is_ok());
    let parts = server.requests_of("UploadPart");
    let faults: Vec<Option<&str>> = parts.iter().map(|part| part.fault).collect();
    assert_eq!(faults, [None, Some("500 InternalError"), None]);

    // From the 2nd on, every UploadPart fails.
    server.fail_upload_parts_from(2);
    assert!(upload(3).await.is_ok());
    assert!(upload(3).await.is_err());
    assert!(upload(3).await.is_err());
    server.clear_faults();
    assert!(upload(3).await.is_ok());

    // Aborted uploads leave the listing; unknown ones are NoSuchUpload.
    client
        .abort_multipart_upload()
        .bucket("bkt")
        .key("x/1")
        .upload_id(&ids[0])
        .send()
        .await
        .unwrap();
    let error = client
        .abort_multipart_upload()
        .bucket("bkt")
        .key("x/1")
        .upload_id(&ids[0])
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&error),
        Some("NoSuchUpload")
    );
    let all = client
        .list_multipart_uploads()
        .bucket("bkt")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = all.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(keys, ["x/2", "x/3", "y/1"]);
}

#[tokio::test]
async fn get_object_bodies_can_be_cut() {
    let server = server_with_bucket().await;
    let client = server.client();
    let data = vec![7u8; 300_000];
    client
        .put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    server.cut_get_object_after(1000, 1);
    let object = client
        .get_object()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .unwrap();
    let mut body = object.body;
    let mut received = 0;
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => received += chunk.len(),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body must end with an error");
    assert_eq!(received, 1000);
    // Only once: the next response is whole.
    let object = client
        .get_object()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(
        object.body.collect().await.unwrap().into_bytes().len(),
        data.len()
    );
    let gets = server.requests_of("GetObject");
    assert_eq!(gets[0].fault, Some("body cut"));
    assert_eq!(gets[1].fault, None);
    // What was sent: the cut body and the whole one.
    assert_eq!(server.bytes_served("bkt", "k"), 1000 + data.len() as u64);
    assert_eq!(server.bytes_served("bkt", "other"), 0);
    server.clear_requests();
    assert_eq!(server.bytes_served("bkt", "k"), 0);
}

#[tokio::test]
async fn folders_are_not_objects_and_missing_buckets_are_errors() {
    let server = server_with_bucket().await;
    let client = server.client();
    client
        .put_object()
        .bucket("bkt")
        .key("folder/inside")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let head = client
        .head_object()
        .bucket("bkt")
        .key("folder")
        .send()
        .await;
    assert_eq!(
        head.unwrap_err()
            .raw_response()
            .map(|response| response.status().as_u16()),
        Some(404)
    );
    let get = client.get_object().bucket("bkt").key("folder").send().await;
    assert!(get.unwrap_err().into_service_error().is_no_such_key());
    client
        .delete_object()
        .bucket("bkt")
        .key("folder")
        .send()
        .await
        .unwrap();
    let listed = client.list_objects_v2().bucket("bkt").send().await.unwrap();
    assert_eq!(listed.contents().len(), 1, "the folder's object is kept");

    let put = client
        .put_object()
        .bucket("missing")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&put.unwrap_err()),
        Some("NoSuchBucket")
    );
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = server_with_bucket().await;
    let endpoint = server.endpoint();
    drop(server);
    // The aborted accept loop goes away as soon as the runtime gets to it.
    let address = endpoint.strip_prefix("http://").unwrap().to_owned();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&address).await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{address} still accepts connections after the server was dropped");
}

/// A client that does not retry (so each injected fault is seen once) and gives up on an
/// attempt after `timeout`.
fn single_attempt_client(server: &S3Server, timeout: std::time::Duration) -> aws_sdk_s3::Client {
    let config = server
        .client()
        .config()
        .to_builder()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(timeout)
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Starts a multipart upload of `key` with one uploaded part; returns its id and the parts.
async fn upload_with_one_part(
    client: &aws_sdk_s3::Client,
    key: &str,
) -> (String, aws_sdk_s3::types::CompletedMultipartUpload) {
    let upload_id = client
        .create_multipart_upload()
        .bucket("bkt")
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let part = client
        .upload_part()
        .bucket("bkt")
        .key(key)
        .upload_id(&upload_id)
        .part_number(1)
        .body(ByteStream::from_static(b"only part"))
        .send()
        .await
        .unwrap();
    let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .parts(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(1)
                .set_e_tag(part.e_tag().map(str::to_owned))
                .build(),
        )
        .build();
    (upload_id, parts)
}

async fn object_exists(client: &aws_sdk_s3::Client, key: &str) -> bool {
    client
        .head_object()
        .bucket("bkt")
        .key(key)
        .send()
        .await
        .is_ok()
}

async fn pending_upload_ids(client: &aws_sdk_s3::Client) -> Vec<String> {
    client
        .list_multipart_uploads()
        .bucket("bkt")
        .send()
        .await
        .unwrap()
        .uploads()
        .iter()
        .filter_map(|upload| upload.upload_id().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn upload_parts_can_be_slowed_down_with_503() {
    let server = server_with_bucket().await;
    let client = single_attempt_client(&server, std::time::Duration::from_secs(10));
    let upload_id = client
        .create_multipart_upload()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    server.slow_down_upload_parts(2);
    let upload = || {
        client
            .upload_part()
            .bucket("bkt")
            .key("k")
            .upload_id(&upload_id)
            .part_number(1)
            .body(ByteStream::from_static(b"part"))
            .send()
    };
    for _ in 0..2 {
        let error = upload().await.unwrap_err();
        assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(503));
        assert_eq!(
            aws_sdk_s3::error::ProvideErrorMetadata::code(&error),
            Some("SlowDown")
        );
    }
    assert!(upload().await.is_ok(), "only the first two are slowed down");
    let faults: Vec<Option<&str>> = server
        .requests_of("UploadPart")
        .iter()
        .map(|r| r.fault)
        .collect();
    assert_eq!(faults, [Some("503 SlowDown"), Some("503 SlowDown"), None]);
}

#[tokio::test]
async fn complete_can_be_refused_with_a_status() {
    let server = server_with_bucket().await;
    let client = single_attempt_client(&server, std::time::Duration::from_secs(10));
    let (upload_id, parts) = upload_with_one_part(&client, "k").await;
    server.fail_complete_with(500);
    for _ in 0..2 {
        let error = client
            .complete_multipart_upload()
            .bucket("bkt")
            .key("k")
            .upload_id(&upload_id)
            .multipart_upload(parts.clone())
            .send()
            .await
            .unwrap_err();
        assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(500));
    }
    assert!(!object_exists(&client, "k").await, "not carried out");
    assert_eq!(pending_upload_ids(&client).await, [upload_id.as_str()]);
    let completes = server.requests_of("CompleteMultipartUpload");
    assert_eq!(completes[0].fault, Some("CompleteMultipartUpload refused"));
    assert_eq!(completes[0].status, Some(500));
    server.clear_faults();
    client
        .complete_multipart_upload()
        .bucket("bkt")
        .key("k")
        .upload_id(&upload_id)
        .multipart_upload(parts)
        .send()
        .await
        .unwrap();
    assert!(object_exists(&client, "k").await);
}

#[tokio::test]
async fn complete_can_answer_200_with_an_error_body() {
    let server = server_with_bucket().await;
    let client = single_attempt_client(&server, std::time::Duration::from_secs(10));
    // Not carried out: the SDK sees the error, the upload stays open.
    let (upload_id, parts) = upload_with_one_part(&client, "not-done").await;
    server.complete_with_200_error(1, false);
    let complete = |key: &'static str, upload_id: String, parts| {
        client
            .complete_multipart_upload()
            .bucket("bkt")
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(parts)
            .send()
    };
    let error = complete("not-done", upload_id.clone(), parts.clone())
        .await
        .unwrap_err();
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(200));
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&error),
        Some("InternalError")
    );
    assert!(!object_exists(&client, "not-done").await);
    assert_eq!(pending_upload_ids(&client).await, [upload_id.as_str()]);
    // Only once.
    complete("not-done", upload_id, parts).await.unwrap();
    assert!(object_exists(&client, "not-done").await);

    // Carried out: the object is there although the reply says otherwise.
    let (upload_id, parts) = upload_with_one_part(&client, "done").await;
    server.complete_with_200_error(1, true);
    assert!(complete("done", upload_id, parts).await.is_err());
    assert!(object_exists(&client, "done").await);
    assert!(pending_upload_ids(&client).await.is_empty());
    let faults: Vec<Option<&str>> = server
        .requests_of("CompleteMultipartUpload")
        .iter()
        .map(|r| r.fault)
        .collect();
    assert_eq!(
        faults,
        [
            Some("200 with an error body, not carried out"),
            None,
            Some("200 with an error body, carried out")
        ]
    );
}

#[tokio::test]
async fn requests_can_be_delayed_by_key_suffix() {
    let server = server_with_bucket().await;
    let client = server.client();
    server.delay(
        "PutObject",
        ".manifest.json",
        std::time::Duration::from_millis(600),
    );
    let put = |key: &'static str| {
        client
            .put_object()
            .bucket("bkt")
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .send()
    };
    let started = std::time::Instant::now();
    put("a.dump").await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_millis(500));
    let delayed = tokio::spawn(put("a.dump.manifest.json"));
    // Logged on arrival, carried out only after the delay.
    for _ in 0..50 {
        if server.requests_of("PutObject").len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let puts = server.requests_of("PutObject");
    assert_eq!(puts.len(), 2);
    assert_eq!(puts[1].fault, Some("delayed"));
    assert_eq!(puts[1].status, None);
    assert!(!object_exists(&client, "a.dump.manifest.json").await);
    let started = std::time::Instant::now();
    delayed.await.unwrap().unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert!(object_exists(&client, "a.dump.manifest.json").await);
    assert_eq!(server.requests_of("PutObject")[1].status, Some(200));
    server.clear_faults();
}

#[tokio::test]
async fn a_stalled_request_is_never_answered() {
    let server = server_with_bucket().await;
    let client = single_attempt_client(&server, std::time::Duration::from_millis(500));
    server.stall("PutObject", "");
    let started = std::time::Instant::now();
    let error = client
        .put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(error, aws_sdk_s3::error::SdkError::TimeoutError(_)),
        "{error:?}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    let put = &server.requests_of("PutObject")[0];
    assert_eq!(put.fault, Some("stalled"));
    assert_eq!(put.status, None);
    assert!(!object_exists(&client, "k").await);
    // Other operations are answered; after clear_faults, so are new puts.
    server.clear_faults();
    client
        .put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn multipart_uploads_can_be_backdated() {
    let server = server_with_bucket().await;
    let client = server.client();
    let (upload_id, _) = upload_with_one_part(&client, "k").await;
    let initiated =
        |uploads: &aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput| {
            std::time::SystemTime::try_from(*uploads.uploads()[0].initiated().unwrap()).unwrap()
        };
    let before = initiated(
        &client
            .list_multipart_uploads()
            .bucket("bkt")
            .send()
            .await
            .unwrap(),
    );
    server.backdate_multipart_uploads(std::time::Duration::from_secs(48 * 3600));
    let listed = client
        .list_multipart_uploads()
        .bucket("bkt")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.uploads()[0].upload_id(), Some(upload_id.as_str()));
    let after = initiated(&listed);
    let age = before.duration_since(after).unwrap();
    assert!((47 * 3600..=49 * 3600).contains(&age.as_secs()), "{age:?}");
}
