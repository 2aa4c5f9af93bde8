//! S3Sink against a real S3 server (s3s + s3s-fs on 127.0.0.1, see backup-testkit) through
//! the real aws-sdk-s3: the conformance suite, multipart uploads, retries and aborts, resumed
//! downloads, pagination, batch deletes, encryption and storage-class headers, and the cleanup
//! of incomplete uploads. The server's request log proves what was sent.
#![cfg(feature = "s3")]
// Clippy's allow-unwrap-in-tests covers `#[test]` functions only, not this file's helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use backup_storage::{conformance, S3Config, S3Encryption, S3Sink, Sink, StorageError};
use backup_testkit::{S3RequestRecord, S3Server};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUCKET: &str = "backups";
const MIB: usize = 1024 * 1024;

async fn server() -> S3Server {
    let server = S3Server::start().await.unwrap();
    server.create_bucket(BUCKET).await.unwrap();
    server
}

/// A config for the test bucket with 5 MiB parts and quick retries.
fn config(prefix: Option<&str>) -> S3Config {
    let mut config = S3Config::new(BUCKET);
    config.prefix = prefix.map(str::to_owned);
    config.part_size = 5 * MIB as u64;
    config.retry_delay = Duration::from_millis(10);
    config.max_retry_delay = Duration::from_millis(50);
    config
}

fn sink(server: &S3Server, config: S3Config) -> S3Sink {
    S3Sink::with_client(server.client(), config).unwrap()
}

/// `len` deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Writes `content` through a writer in odd-sized chunks.
async fn write_in_odd_chunks(writer: &mut Box<dyn backup_storage::ObjectWriter>, content: &[u8]) {
    let sizes = [1usize, 4093, 65_537, 1_048_573, 777_777];
    let mut offset = 0;
    for size in sizes.iter().cycle() {
        if offset == content.len() {
            break;
        }
        let end = (offset + size).min(content.len());
        writer.write_all(&content[offset..end]).await.unwrap();
        offset = end;
    }
}

async fn read_all(sink: &S3Sink, key: &str) -> Vec<u8> {
    let mut reader = sink.get(key).await.unwrap();
    let mut content = Vec::new();
    reader.read_to_end(&mut content).await.unwrap();
    content
}

/// The keys of the multipart uploads in progress in the bucket.
async fn pending_uploads(server: &S3Server) -> Vec<String> {
    let pending = server.pending_uploads(BUCKET).await;
    pending.into_iter().map(|(key, _)| key).collect()
}

/// Waits (up to 10 s) until no multipart upload is pending.
async fn wait_for_no_pending_uploads(server: &S3Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending = pending_uploads(server).await;
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "uploads still pending: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn operations(requests: &[S3RequestRecord]) -> Vec<&'static str> {
    requests.iter().map(|request| request.operation).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sink_passes_conformance_suite() {
    let server = server().await;
    let sink = sink(&server, config(None));
    conformance::run_all(&sink).await;
    // The suite's large object went through a multipart upload.
    assert!(!server.requests_of("UploadPart").is_empty());
    assert!(pending_uploads(&server).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sink_with_prefix_passes_conformance_suite() {
    let server = server().await;
    let sink = sink(&server, config(Some("nightly/host-1")));
    conformance::run_all(&sink).await;
    for request in server.requests() {
        if let Some(key) = request.key() {
            assert!(
                key.starts_with("nightly/host-1/"),
                "{} outside the prefix: {key:?}",
                request.operation
            );
        }
    }
}

#[tokio::test]
async fn keys_live_under_the_prefix_without_double_slashes() {
    let server = server().await;
    let sink = sink(&server, {
        let mut config = S3Config::new(BUCKET);
        config.prefix = backup_storage::s3::normalize_prefix("/nightly/").unwrap();
        config
    });
    sink.put("database/a.sql.gz.enc", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let raw = server
        .client()
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let stored: Vec<&str> = raw.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(stored, ["nightly/database/a.sql.gz.enc"]);
    let listed = sink.list("").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "database/a.sql.gz.enc");
    assert_eq!(sink.describe(), "s3://backups/nightly (region us-east-1)");

    let mut with_endpoint = config(None);
    with_endpoint.endpoint = Some(server.endpoint());
    let described = S3Sink::with_client(server.client(), with_endpoint)
        .unwrap()
        .describe();
    assert_eq!(
        described,
        format!(
            "s3://backups (endpoint {}, region us-east-1)",
            server.endpoint()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_is_a_multipart_upload_that_round_trips() {
    let server = server().await;
    let sink = sink(&server, config(None));
    let content = data(17 * MIB + 12_345, 1);
    let key = "database/big.sql.gz.enc";

    let mut writer = sink.writer(key).await.unwrap();
    write_in_odd_chunks(&mut writer, &content).await;
    let meta = writer.commit().await.unwrap();
    assert_eq!(meta.key, key);
    assert_eq!(meta.size, content.len() as u64);

    let requests = server.requests();
    let ops = operations(&requests);
    assert_eq!(
        ops.iter()
            .filter(|op| **op == "CreateMultipartUpload")
            .count(),
        1,
        "{ops:?}"
    );
    let parts = server.requests_of("UploadPart");
    assert_eq!(parts.len(), 4, "17 MiB in 5 MiB parts: {ops:?}");
    assert!(parts.iter().all(|part| part.status == Some(200)));
    let mut numbers: Vec<String> = parts
        .iter()
        .map(|part| {
            part.query
                .split('&')
                .find_map(|pair| pair.strip_prefix("partNumber="))
                .unwrap()
                .to_owned()
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["1", "2", "3", "4"]);
    assert_eq!(
        ops.iter()
            .filter(|op| **op == "CompleteMultipartUpload")
            .count(),
        1
    );
    assert!(!ops.contains(&"PutObject"));
    assert!(!ops.contains(&"AbortMultipartUpload"));
    // Full parts are exactly 5 MiB; the last holds the rest.
    let sizes: Vec<usize> = parts
        .iter()
        .map(|part| part.header("content-length").unwrap().parse().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), content.len());
    assert_eq!(sizes.iter().filter(|size| **size == 5 * MIB).count(), 3);

    assert_eq!(sink.head(key).await.unwrap().size, content.len() as u64);
    assert!(read_all(&sink, key).await == content, "content differs");
    assert!(pending_uploads(&server).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_in_flight_are_bounded_by_the_concurrency() {
    for concurrency in [1, 2] {
        let server = server().await;
        let mut config = config(None);
        config.concurrency = concurrency;
        let sink = sink(&server, config);
        let content = data(31 * MIB, 13);
        let mut writer = sink.writer("bounded").await.unwrap();
        write_in_odd_chunks(&mut writer, &content).await;
        writer.commit().await.unwrap();
        assert_eq!(server.requests_of("UploadPart").len(), 7);
        let max = server.max_in_flight("UploadPart");
        assert!(
            (1..=concurrency).contains(&max),
            "{max} parts in flight with concurrency {concurrency}"
        );
        assert!(read_all(&sink, "bounded").await == content);
    }
}

#[tokio::test]
async fn small_object_is_a_single_put() {
    let server = server().await;
    let sink = sink(&server, config(None));
    server.clear_requests();
    // Exactly one part: still a single PutObject.
    let content = data(5 * MIB, 2);
    let mut writer = sink.writer("exactly-one-part").await.unwrap();
    writer.write_all(&content).await.unwrap();
    writer.commit().await.unwrap();
    assert_eq!(operations(&server.requests()), ["PutObject"]);
    assert!(read_all(&sink, "exactly-one-part").await == content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_is_retried() {
    let server = server().await;
    let sink = sink(&server, config(None));
    server.fail_upload_part(2);
    let content = data(11 * MIB, 3);
    let mut writer = sink.writer("retried").await.unwrap();
    write_in_odd_chunks(&mut writer, &content).await;
    writer.commit().await.unwrap();

    let parts = server.requests_of("UploadPart");
    assert_eq!(parts.len(), 4, "3 parts + 1 retry");
    assert_eq!(
        parts.iter().filter(|part| part.status == Some(500)).count(),
        1
    );
    assert!(read_all(&sink, "retried").await == content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_part_failure_aborts_the_upload() {
    let server = server().await;
    let mut config = config(None);
    config.part_attempts = 3;
    let sink = sink(&server, config);
    sink.put("kept", Bytes::from_static(b"old")).await.unwrap();
    server.fail_upload_parts_from(2);

    let content = data(23 * MIB, 4);
    let mut writer = sink.writer("doomed").await.unwrap();
    let mut write_error = None;
    for chunk in content.chunks(MIB) {
        if let Err(error) = writer.write_all(chunk).await {
            write_error = Some(error);
            break;
        }
    }
    let commit = writer.commit().await;
    let error = commit.expect_err("the commit of a failed upload must fail");
    assert!(
        matches!(
            error,
            StorageError::S3 {
                op: "UploadPart",
                ..
            }
        ),
        "{error}"
    );
    if let Some(write_error) = write_error {
        assert!(
            write_error.to_string().contains("UploadPart"),
            "{write_error}"
        );
    }
    assert!(error.to_string().contains("InternalError"), "{error}");

    assert!(sink.head("doomed").await.unwrap_err().is_not_found());
    assert!(pending_uploads(&server).await.is_empty());
    assert_eq!(server.requests_of("AbortMultipartUpload").len(), 1);
    // Each failing part was tried exactly `part_attempts` times.
    let failed = server
        .requests_of("UploadPart")
        .into_iter()
        .filter(|part| part.status == Some(500))
        .count();
    assert!(failed >= 3, "{failed} failed attempts");
    let keys: Vec<String> = sink
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys, ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_or_aborted_writer_aborts_its_upload() {
    let server = server().await;
    let sink = sink(&server, config(None));

    let mut writer = sink.writer("dropped").await.unwrap();
    writer.write_all(&data(12 * MIB, 5)).await.unwrap();
    writer.flush().await.unwrap();
    drop(writer);
    wait_for_no_pending_uploads(&server).await;
    assert!(!server.requests_of("CreateMultipartUpload").is_empty());
    assert_eq!(server.requests_of("AbortMultipartUpload").len(), 1);
    assert!(sink.head("dropped").await.unwrap_err().is_not_found());

    let mut writer = sink.writer("aborted").await.unwrap();
    writer.write_all(&data(12 * MIB, 6)).await.unwrap();
    writer.abort().await.unwrap();
    assert!(pending_uploads(&server).await.is_empty());
    assert_eq!(server.requests_of("AbortMultipartUpload").len(), 2);
    assert!(sink.head("aborted").await.unwrap_err().is_not_found());
    assert!(sink.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_paginates_and_delete_many_batches() {
    let server = server().await;
    let sink = sink(&server, config(Some("p")));
    let client = server.client();
    let mut keys: Vec<String> = (0..1100).map(|i| format!("many/obj-{i:05}")).collect();
    futures_util::stream::iter(keys.iter().rev())
        .map(|key| {
            let client = client.clone();
            async move {
                client
                    .put_object()
                    .bucket(BUCKET)
                    .key(format!("p/{key}"))
                    .send()
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    sink.put("other", Bytes::new()).await.unwrap();
    server.clear_requests();

    let listed = sink.list("many/").await.unwrap();
    keys.sort();
    let listed_keys: Vec<&str> = listed.iter().map(|meta| meta.key.as_str()).collect();
    assert_eq!(listed_keys, keys);
    let list_requests = server.requests_of("ListObjectsV2");
    assert_eq!(list_requests.len(), 2, "1,100 objects take two pages");
    assert!(list_requests[1].has_query("continuation-token"));

    server.clear_requests();
    sink.delete_many(&keys).await.unwrap();
    assert_eq!(
        server.requests_of("DeleteObjects").len(),
        2,
        "1,000 per request"
    );
    assert!(sink.list("many/").await.unwrap().is_empty());
    assert_eq!(sink.list("").await.unwrap().len(), 1, "other is kept");

    // Invalid keys are refused before anything is deleted.
    let error = sink
        .delete_many(&["other".to_owned(), "../x".to_owned()])
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::InvalidKey { .. }));
    assert_eq!(sink.list("").await.unwrap().len(), 1);
    sink.delete_many(&[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_resumes_after_a_cut_connection() {
    let server = server().await;
    let sink = sink(&server, config(None));
    let content = data(3 * MIB + 99, 7);
    sink.put("resumed", Bytes::from(content.clone()))
        .await
        .unwrap();
    let etag = server
        .client()
        .head_object()
        .bucket(BUCKET)
        .key("resumed")
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    server.clear_requests();
    server.cut_get_object_after(MIB as u64, 1);

    assert!(
        read_all(&sink, "resumed").await == content,
        "content differs"
    );
    let gets = server.requests_of("GetObject");
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[0].fault, Some("body cut"));
    assert_eq!(gets[0].header("range"), None);
    assert_eq!(gets[1].header("range"), Some("bytes=1048576-"));
    assert_eq!(gets[1].header("if-match"), Some(etag.as_str()));

    // Several cuts in a row, at odd offsets: still identical.
    server.clear_requests();
    server.cut_get_object_after(100_003, 3);
    assert!(
        read_all(&sink, "resumed").await == content,
        "content differs"
    );
    let ranges: Vec<Option<String>> = server
        .requests_of("GetObject")
        .iter()
        .map(|get| get.header("range").map(str::to_owned))
        .collect();
    let expected = [None, Some("100003"), Some("200006"), Some("300009")]
        .map(|start| start.map(|start| format!("bytes={start}-")));
    assert_eq!(ranges, expected);
}

/// An object larger than two ranges is read by `concurrency` ranged GetObjects at once
/// (the first range from the first response), each `If-Match` the first ETag, and handed over
/// in order; with `concurrency` 1 it is one stream as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_downloads_fetch_ranges_in_parallel_in_order() {
    use backup_storage::READ_RANGE_BYTES;
    let server = server().await;
    let mut parallel = config(None);
    parallel.concurrency = 4;
    let sink = sink(&server, parallel);
    let range = READ_RANGE_BYTES as usize;
    let content = data(5 * range + 12_345, 21);
    sink.put("big", Bytes::from(content.clone())).await.unwrap();
    // A delay on each GetObject, so that ranges overlap in time.
    server.delay("GetObject", "big", Duration::from_millis(100));
    server.clear_requests();
    assert!(read_all(&sink, "big").await == content, "content differs");
    let gets = server.requests_of("GetObject");
    let ranges: Vec<Option<&str>> = gets.iter().map(|g| g.header("range")).collect();
    assert_eq!(ranges.len(), 6, "{ranges:?}");
    assert_eq!(
        ranges[0], None,
        "the first request learns the size and ETag"
    );
    let mut asked: Vec<String> = ranges[1..].iter().map(|r| r.unwrap().to_owned()).collect();
    asked.sort_by_key(|r| r[6..].split('-').next().unwrap().parse::<u64>().unwrap());
    // Each range bounded; the last one open-ended (to the end of the object).
    let expected: Vec<String> = (1..6)
        .map(|i| {
            let start = i * range;
            if i == 5 {
                format!("bytes={start}-")
            } else {
                format!("bytes={start}-{}", (i + 1) * range - 1)
            }
        })
        .collect();
    assert_eq!(asked, expected);
    let etag = server
        .client()
        .head_object()
        .bucket(BUCKET)
        .key("big")
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    for get in &gets[1..] {
        assert_eq!(
            get.header("if-match"),
            Some(etag.as_str()),
            "If-Match the ETag"
        );
    }
    assert!(
        server.max_in_flight("GetObject") > 1,
        "ranges were downloaded at the same time"
    );
    server.clear_faults();

    // One connection when concurrency is 1.
    let mut serial = config(None);
    serial.concurrency = 1;
    let one = S3Sink::with_client(server.client(), serial).unwrap();
    server.clear_requests();
    assert!(read_all(&one, "big").await == content, "content differs");
    assert_eq!(server.requests_of("GetObject").len(), 1);
}

/// Ranges whose connections break resume on their own, within their range, and the object
/// still comes out whole and in order; an object replaced meanwhile is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_range_resumes_and_order_is_kept() {
    use backup_storage::READ_RANGE_BYTES;
    let server = server().await;
    let mut parallel = config(None);
    parallel.concurrency = 3;
    let sink = sink(&server, parallel);
    let range = READ_RANGE_BYTES as usize;
    let content = data(4 * range + 777, 22);
    sink.put("cut", Bytes::from(content.clone())).await.unwrap();
    server.clear_requests();
    server.cut_get_object_after(1_000_003, 3);
    assert!(read_all(&sink, "cut").await == content, "content differs");
    let gets = server.requests_of("GetObject");
    assert_eq!(
        gets.iter().filter(|g| g.fault == Some("body cut")).count(),
        3,
        "three connections were cut"
    );
    let resumed = gets
        .iter()
        .filter_map(|g| g.header("range"))
        .filter(|r| {
            let start: u64 = r[6..].split('-').next().unwrap().parse().unwrap();
            !start.is_multiple_of(READ_RANGE_BYTES)
        })
        .count();
    assert_eq!(
        resumed, 3,
        "each cut range resumed where it broke: {gets:?}"
    );

    // Replaced between the first response and a later range: refused.
    server.clear_requests();
    server.delay("GetObject", "cut", Duration::from_millis(200));
    let mut reader = sink.get("cut").await.unwrap();
    sink.put("cut", Bytes::from(data(4 * range + 777, 23)))
        .await
        .unwrap();
    let mut partial = Vec::new();
    let error = reader.read_to_end(&mut partial).await.unwrap_err();
    assert!(error.to_string().contains("replaced"), "{error}");
    assert!(partial.len() < content.len());
    server.clear_faults();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_of_a_replaced_object_is_an_error() {
    let server = server().await;
    let sink = sink(&server, config(None));
    sink.put("changing", Bytes::from(data(2 * MIB, 8)))
        .await
        .unwrap();
    server.cut_get_object_after(512 * 1024, 1);
    let mut reader = sink.get("changing").await.unwrap();
    let mut first = vec![0; 512 * 1024];
    reader.read_exact(&mut first).await.unwrap();
    sink.put("changing", Bytes::from(data(2 * MIB, 9)))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let error = reader.read_to_end(&mut rest).await.unwrap_err();
    assert!(error.to_string().contains("replaced"), "{error}");
    let gets = server.requests_of("GetObject");
    assert_eq!(gets.last().unwrap().status, Some(412));
}

#[tokio::test]
async fn download_gives_up_after_bounded_attempts() {
    let server = server().await;
    let mut config = config(None);
    config.read_attempts = 2;
    let sink = sink(&server, config);
    sink.put("flaky", Bytes::from(data(MIB, 10))).await.unwrap();
    // Every response body is cut before its first byte: no progress, ever.
    server.cut_get_object_after(0, 100);
    let mut reader = sink.get("flaky").await.unwrap();
    let mut content = Vec::new();
    let error = reader.read_to_end(&mut content).await.unwrap_err();
    assert!(
        error.to_string().contains("gave up after 2 attempts"),
        "{error}"
    );
    assert_eq!(server.requests_of("GetObject").len(), 3, "1 + 2 attempts");
}

/// A download whose body stops arriving (the connection stays open, nothing more comes) is
/// resumed after `timeout` from where it stopped; one that keeps stalling ends in an error
/// after the bounded attempts, never a hang.
#[tokio::test]
async fn a_stalled_download_resumes_and_never_hangs() {
    let server = server().await;
    let mut config = config(None);
    config.timeout = Duration::from_millis(500);
    config.read_attempts = 2;
    let sink = sink(&server, config);
    let content = data(3 * MIB + 5, 12);
    sink.put("stalled", Bytes::from(content.clone()))
        .await
        .unwrap();
    server.clear_requests();
    server.stall_get_object_after(MIB as u64, 1);
    assert!(
        read_all(&sink, "stalled").await == content,
        "content differs"
    );
    let gets = server.requests_of("GetObject");
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[0].fault, Some("body stalled"));
    assert_eq!(gets[1].header("range"), Some("bytes=1048576-"));

    server.clear_requests();
    server.stall_get_object_after(0, 100);
    let mut reader = sink.get("stalled").await.unwrap();
    let mut partial = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut partial));
    let error = read.await.expect("a stalled download hung").unwrap_err();
    assert!(error.to_string().contains("no data for"), "{error}");
}

/// Each of PutObject, CreateMultipartUpload and CopyObject, with the headers that matter.
async fn writes_with_headers(server: &S3Server, sink: &S3Sink) -> Vec<S3RequestRecord> {
    sink.put("small", Bytes::from_static(b"small"))
        .await
        .unwrap();
    let mut writer = sink.writer("large").await.unwrap();
    writer.write_all(&data(6 * MIB, 11)).await.unwrap();
    writer.commit().await.unwrap();
    sink.copy("small", "copies/small").await.unwrap();
    let requests = server.requests();
    let writes: Vec<S3RequestRecord> = requests
        .into_iter()
        .filter(|r| {
            matches!(
                r.operation,
                "PutObject" | "CreateMultipartUpload" | "CopyObject"
            )
        })
        .collect();
    assert_eq!(
        operations(&writes),
        ["PutObject", "CreateMultipartUpload", "CopyObject"]
    );
    writes
}

#[tokio::test]
async fn encryption_and_storage_class_headers_are_sent() {
    let server = server().await;
    let mut config = config(None);
    config.storage_class = Some("INTELLIGENT_TIERING".to_owned());
    let sink = sink(&server, config);
    for request in writes_with_headers(&server, &sink).await {
        assert_eq!(
            request.header("x-amz-server-side-encryption"),
            Some("AES256"),
            "{}",
            request.operation
        );
        assert_eq!(
            request.header("x-amz-storage-class"),
            Some("INTELLIGENT_TIERING"),
            "{}",
            request.operation
        );
        assert_eq!(request.status, Some(200), "{}", request.operation);
    }
    // Parts carry no such headers (S3 would reject them).
    for part in server.requests_of("UploadPart") {
        assert_eq!(part.header("x-amz-storage-class"), None);
    }
}

#[tokio::test]
async fn kms_encryption_headers_are_sent() {
    let server = server().await;
    let mut config = config(None);
    config.encryption = S3Encryption::Kms {
        key_id: Some("alias/backups".to_owned()),
    };
    let sink = sink(&server, config);
    for request in writes_with_headers(&server, &sink).await {
        assert_eq!(
            request.header("x-amz-server-side-encryption"),
            Some("aws:kms")
        );
        assert_eq!(
            request.header("x-amz-server-side-encryption-aws-kms-key-id"),
            Some("alias/backups")
        );
        assert_eq!(
            request.header("x-amz-storage-class"),
            Some("INTELLIGENT_TIERING")
        );
    }
}

#[tokio::test]
async fn sse_none_sends_no_encryption_header() {
    let server = server().await;
    let sink = sink(&server, {
        let mut config = S3Config::new(BUCKET);
        config.encryption = S3Encryption::None;
        config.storage_class = None;
        config.part_size = 5 * MIB as u64;
        config
    });
    for request in writes_with_headers(&server, &sink).await {
        let sse: Vec<&String> = request
            .headers
            .keys()
            .filter(|name| name.starts_with("x-amz-server-side-encryption"))
            .collect();
        assert!(sse.is_empty(), "{}: {sse:?}", request.operation);
        assert_eq!(request.header("x-amz-storage-class"), None);
    }
}

#[tokio::test]
async fn remove_incomplete_aborts_old_uploads_under_the_prefix_only() {
    let server = server().await;
    let sink = sink(&server, config(Some("nightly")));
    let client = server.client();
    for key in ["nightly/database/interrupted", "elsewhere/not-ours"] {
        client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
    }

    let removed = sink
        .remove_incomplete(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(pending_uploads(&server).await.len(), 2);

    let removed = sink.remove_incomplete(Duration::ZERO).await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(
        removed[0].contains("s3://backups/nightly/database/interrupted"),
        "{removed:?}"
    );
    assert_eq!(pending_uploads(&server).await, ["elsewhere/not-ours"]);
    assert!(sink
        .remove_incomplete(Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_copies_use_upload_part_copy() {
    let server = server().await;
    let mut config = config(None);
    config.multipart_copy_threshold = 5 * MIB as u64;
    let sink = sink(&server, config);
    let content = data(12 * MIB + 1, 12);
    sink.put("source", Bytes::from(content.clone()))
        .await
        .unwrap();
    server.clear_requests();

    sink.copy("source", "copies/target").await.unwrap();
    let ops = operations(&server.requests());
    assert_eq!(server.requests_of("UploadPartCopy").len(), 3, "{ops:?}");
    assert!(!ops.contains(&"CopyObject"));
    let create = &server.requests_of("CreateMultipartUpload")[0];
    assert_eq!(
        create.header("x-amz-server-side-encryption"),
        Some("AES256")
    );
    assert!(read_all(&sink, "copies/target").await == content);
    assert!(pending_uploads(&server).await.is_empty());
}

#[tokio::test]
async fn errors_say_what_to_check() {
    let server = server().await;
    let mut bad_bucket = config(None);
    bad_bucket.bucket = "no-such-bucket".to_owned();
    let error = sink(&server, bad_bucket)
        .put("x", Bytes::new())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("NoSuchBucket"), "{message}");
    assert!(message.contains("BACKUP_S3_BUCKET"), "{message}");

    let wrong_secret = aws_sdk_s3::Client::from_conf(
        server
            .client()
            .config()
            .to_builder()
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                server.access_key(),
                "wrong-secret",
                None,
                None,
                "test",
            ))
            .build(),
    );
    let sink = S3Sink::with_client(wrong_secret, config(None)).unwrap();
    let message = sink.list("").await.unwrap_err().to_string();
    assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");

    let mut unreachable = config(None);
    unreachable.endpoint = Some("http://127.0.0.1:9".to_owned());
    let client = aws_sdk_s3::Client::from_conf(
        server
            .client()
            .config()
            .to_builder()
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    let message = S3Sink::with_client(client, unreachable)
        .unwrap()
        .head("x")
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("BACKUP_S3_ENDPOINT"), "{message}");
}

/// A commit whose reply is lost after the server carried it out (the SDK sees a 500, retries,
/// and then finds the upload gone or, for an exclusive write, the key taken) is recognised as
/// committed: the object is there whole, and the writer says so instead of failing and
/// leaving an object its caller believes was never written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_reply_was_lost_is_recognised_as_committed() {
    use backup_storage::WriteMode;
    let server = server().await;
    let sink = sink(&server, config(None));
    for mode in [WriteMode::Create, WriteMode::Overwrite] {
        // Multipart: two parts of 5 MiB and a bit.
        let key = format!("database/multipart-{mode:?}.bin");
        let bytes = data(11 * MIB + 3, 7);
        server.lose_reply_of("CompleteMultipartUpload", 1);
        let mut writer = sink.writer_with(&key, mode).await.unwrap();
        writer.write_all(&bytes).await.unwrap();
        let meta = writer.commit().await.unwrap();
        assert_eq!(meta.size, bytes.len() as u64);
        assert_eq!(sink.get_bytes(&key, 1 << 30).await.unwrap(), bytes);
        assert!(
            server
                .requests()
                .iter()
                .any(|r| r.fault == Some("reply lost after the operation was carried out")),
            "the fault was not injected"
        );
        wait_for_no_pending_uploads(&server).await;

        // A single PutObject.
        let key = format!("database/small-{mode:?}.json");
        server.lose_reply_of("PutObject", 1);
        sink.put_with(&key, Bytes::from_static(b"{\"small\":true}"), mode)
            .await
            .unwrap();
        assert_eq!(
            sink.get_bytes(&key, 100).await.unwrap(),
            Bytes::from_static(b"{\"small\":true}")
        );
    }
    // An exclusive write that finds another object under the key still fails.
    server.clear_faults();
    let err = sink
        .put_with(
            "database/small-Create.json",
            Bytes::from_static(b"other bytes"),
            WriteMode::Create,
        )
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
}

/// Writes a small and a large object in `mode`, returning their keys.
async fn write_both(sink: &S3Sink, mode: backup_storage::WriteMode, tag: &str) -> [String; 2] {
    let small = format!("{tag}/small");
    let large = format!("{tag}/large");
    sink.put_with(&small, Bytes::from_static(b"small"), mode)
        .await
        .unwrap();
    let mut writer = sink.writer_with(&large, mode).await.unwrap();
    writer.write_all(&data(11 * MIB, 5)).await.unwrap();
    writer.commit().await.unwrap();
    [small, large]
}

#[tokio::test]
async fn object_lock_is_sent_with_every_retained_upload_with_a_checksum_and_only_then() {
    use backup_storage::s3::{ObjectLock, ObjectLockMode};
    use backup_storage::WriteMode;
    let server = server().await;
    let mut locked = config(None);
    locked.object_lock = Some(ObjectLock {
        mode: ObjectLockMode::Governance,
        days: 3,
    });
    let sink = sink(&server, locked);
    let before = chrono::Utc::now();
    let retained = write_both(&sink, WriteMode::Retained, "retained").await;
    let uploads: Vec<S3RequestRecord> = server
        .requests()
        .into_iter()
        .filter(|r| matches!(r.operation, "PutObject" | "CreateMultipartUpload"))
        .collect();
    assert_eq!(operations(&uploads), ["PutObject", "CreateMultipartUpload"]);
    for request in &uploads {
        assert_eq!(
            request.header("x-amz-object-lock-mode"),
            Some("GOVERNANCE"),
            "{}",
            request.operation
        );
        let until = request
            .header("x-amz-object-lock-retain-until-date")
            .unwrap();
        let until = chrono::DateTime::parse_from_rfc3339(until).unwrap();
        let days = (until.with_timezone(&chrono::Utc) - before).num_hours();
        assert!((71..=72).contains(&days), "{until}: {days} h");
    }
    // The checksum S3 requires: on the single PUT and on every part.
    assert!(uploads[0].header("content-md5").is_some());
    let parts = server.requests_of("UploadPart");
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p.header("content-md5").is_some()));
    for key in &retained {
        let (mode, _) = server.retention(BUCKET, key).expect("locked");
        assert_eq!(mode, "GOVERNANCE");
        let until = sink.retained_until(key).await.unwrap().expect("retained");
        assert!(until > before + chrono::TimeDelta::hours(71), "{until}");
    }

    // Create (claims, markers) and Overwrite writes are not locked.
    server.clear_requests();
    let plain = write_both(&sink, WriteMode::Create, "claims").await;
    sink.put("reports/r.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    for request in server.requests() {
        assert_eq!(
            request.header("x-amz-object-lock-mode"),
            None,
            "{}",
            request.operation
        );
    }
    for key in plain.iter().chain(["reports/r.json".to_owned()].iter()) {
        assert_eq!(server.retention(BUCKET, key), None, "{key}");
        assert_eq!(sink.retained_until(key).await.unwrap(), None);
    }

    // A copy is locked afterwards with retain().
    sink.copy("claims/small", "copied").await.unwrap();
    assert_eq!(sink.retained_until("copied").await.unwrap(), None);
    sink.retain("copied").await.unwrap();
    assert!(sink.retained_until("copied").await.unwrap().is_some());
    assert_eq!(server.requests_of("PutObjectRetention").len(), 1);

    // Without a lock configured, a retained write sends no lock header and no checksum.
    server.clear_requests();
    let open = sink_for(&server);
    write_both(&open, WriteMode::Retained, "open").await;
    for request in server.requests() {
        assert_eq!(request.header("x-amz-object-lock-mode"), None);
        assert_eq!(request.header("content-md5"), None, "{}", request.operation);
    }
    // A lock is found whatever this sink's configuration says.
    assert!(open
        .retained_until("retained/small")
        .await
        .unwrap()
        .is_some());
    open.retain("open/small").await.unwrap();
    assert_eq!(server.retention(BUCKET, "open/small"), None);
}

#[tokio::test]
async fn the_test_server_refuses_a_locked_upload_without_a_checksum_as_s3_does() {
    let server = server().await;
    let until =
        aws_sdk_s3::primitives::DateTime::from_secs(chrono::Utc::now().timestamp() + 86_400);
    let refused = server
        .client()
        .put_object()
        .bucket(BUCKET)
        .key("no-checksum")
        .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Governance)
        .object_lock_retain_until_date(until)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await;
    let error = format!("{:?}", refused.unwrap_err());
    assert!(error.contains("Content-MD5"), "{error}");
    assert_eq!(server.retention(BUCKET, "no-checksum"), None);
}

fn sink_for(server: &S3Server) -> S3Sink {
    sink(server, config(None))
}
