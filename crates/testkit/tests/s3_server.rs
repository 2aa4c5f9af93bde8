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
