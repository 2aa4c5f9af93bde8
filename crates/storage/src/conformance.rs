//! The conformance suite every [`Sink`] implementation must pass (test support).
//!
//! [`run_all`] runs every check; each check is also public so a backend's tests can run one
//! alone. Checks panic with a message naming the sink, the check and what went wrong.
//!
//! Every check works under its own fresh prefix `conformance/<16 hex>/<check>/` and deletes
//! what it wrote when it passes, so the suite can run against a shared bucket, several times
//! at once. It never lists outside its prefix.

use std::fmt::Display;

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Result, StorageError};
use crate::sink::{ObjectMeta, ObjectWriter, Sink, WriteMode};

/// Keys that every sink must refuse for every operation.
pub const INVALID_KEYS: &[&str] = &[
    "", "/abs", "../x", "a/../b", "a//b", "a/", "a/./b", "a\\b", "a\0b", ".tmp-x",
];

/// Size of the large object of [`put_and_get_round_trip`]: over 5 MiB, so an S3 sink must
/// use more than one multipart part, and not a multiple of any chunk size.
const LARGE_OBJECT_SIZE: usize = 6 * 1024 * 1024 + 17;

/// Odd write sizes, cycled through when streaming the large object.
const WRITE_CHUNK_SIZES: &[usize] = &[1, 7, 4093, 65_537, 1_048_573, 300_007];

/// Runs every check against `sink`, panicking at the first failure.
pub async fn run_all(sink: &dyn Sink) {
    put_and_get_round_trip(sink).await;
    head_reports_size_and_time(sink).await;
    overwrite_replaces(sink).await;
    create_never_replaces(sink).await;
    open_writer_is_invisible_until_commit(sink).await;
    dropped_writer_leaves_nothing(sink).await;
    aborted_writer_leaves_nothing(sink).await;
    missing_key_is_not_found(sink).await;
    delete_removes_object(sink).await;
    delete_missing_key_is_ok(sink).await;
    delete_detached_removes_only_matching_content(sink).await;
    list_filters_by_prefix_and_sorts(sink).await;
    copy_duplicates_object(sink).await;
    invalid_keys_are_rejected(sink).await;
    get_bytes_enforces_limit(sink).await;
    unicode_and_space_keys_work(sink).await;
}

/// Empty, one-byte and several-MiB objects (streamed in odd-sized chunks) read back exactly,
/// and `commit` reports the key and size.
pub async fn put_and_get_round_trip(sink: &dyn Sink) {
    let check = Check::new(sink, "put_and_get_round_trip");

    let empty = check.key("empty");
    let meta = check.ok(
        "put of an empty object",
        sink.put(&empty, Bytes::new()).await,
    );
    check.expect_meta(&meta, &empty, 0);
    check.expect_content(&empty, &[]).await;

    let one = check.key("one-byte");
    let meta = check.ok(
        "put of a 1-byte object",
        sink.put(&one, Bytes::from_static(b"x")).await,
    );
    check.expect_meta(&meta, &one, 1);
    check.expect_content(&one, b"x").await;

    let large = check.key("folder/large.bin");
    let data = pattern(LARGE_OBJECT_SIZE, 1);
    let mut writer = check.ok("writer", sink.writer(&large).await);
    let mut offset = 0;
    for &size in WRITE_CHUNK_SIZES.iter().cycle() {
        if offset == data.len() {
            break;
        }
        let end = (offset + size).min(data.len());
        if let Err(error) = writer.write_all(&data[offset..end]).await {
            check.fail(format!(
                "writing bytes {offset}..{end} of {large:?}: {error}"
            ));
        }
        offset = end;
    }
    let meta = check.ok("commit of the large object", writer.commit().await);
    check.expect_meta(&meta, &large, data.len() as u64);
    check.expect_content(&large, &data).await;

    check.cleanup().await;
}

/// `head` reports the size and a last-modified time close to the time of the write.
pub async fn head_reports_size_and_time(sink: &dyn Sink) {
    let check = Check::new(sink, "head_reports_size_and_time");
    let key = check.key("object");
    let before = Utc::now();
    check.ok("put", sink.put(&key, Bytes::from(pattern(1234, 2))).await);
    let after = Utc::now();
    let meta = check.ok("head", sink.head(&key).await);
    check.expect_meta(&meta, &key, 1234);
    // Generous, to tolerate a remote store's clock skew and coarse timestamps.
    let tolerance = TimeDelta::minutes(5);
    if meta.last_modified < before - tolerance || meta.last_modified > after + tolerance {
        check.fail(format!(
            "head of {key:?} reports last_modified {}, but it was written between {before} and \
             {after}",
            meta.last_modified
        ));
    }
    check.cleanup().await;
}

/// Writing an existing key replaces its content (also with a shorter one).
pub async fn overwrite_replaces(sink: &dyn Sink) {
    let check = Check::new(sink, "overwrite_replaces");
    let key = check.key("object");
    check.ok(
        "first put",
        sink.put(&key, Bytes::from(pattern(5000, 3))).await,
    );
    let second = pattern(100, 4);
    check.ok(
        "second put",
        sink.put(&key, Bytes::from(second.clone())).await,
    );
    check.expect_content(&key, &second).await;
    let meta = check.ok("head", sink.head(&key).await);
    check.expect_meta(&meta, &key, 100);
    check.expect_keys(&check.prefix, &[key.as_str()]).await;
    check.cleanup().await;
}

/// [`Sink::delete_detached`] removes a marker whose content is what the caller says (once the
/// clean-ups it started have finished), and leaves one with other content, or a larger
/// object, alone. Sinks that keep the trait's default (which leaves everything for pruning)
/// do not pass this check.
pub async fn delete_detached_removes_only_matching_content(sink: &dyn Sink) {
    let check = Check::new(sink, "delete_detached_removes_only_matching_content");
    let ours = check.key("ours.claim");
    let theirs = check.key("theirs.claim");
    let longer = check.key("longer.claim");
    let body = Bytes::from_static(b"{\"run\":\"a\"}");
    check.ok("put ours", sink.put(&ours, body.clone()).await);
    check.ok(
        "put theirs",
        sink.put(&theirs, Bytes::from_static(b"{\"run\":\"b\"}"))
            .await,
    );
    let mut long = body.to_vec();
    long.extend_from_slice(b" and more");
    check.ok(
        "put longer",
        sink.put(&longer, Bytes::from(long.clone())).await,
    );
    for key in [&ours, &theirs, &longer] {
        sink.delete_detached(key, body.clone());
    }
    sink.delete_detached(&check.key("absent.claim"), body.clone());
    crate::wait_for_cleanups(std::time::Duration::from_secs(30)).await;
    check.expect_not_found("head of our marker", sink.head(&ours).await);
    check.expect_content(&theirs, b"{\"run\":\"b\"}").await;
    check.expect_content(&longer, &long).await;
    for key in [&theirs, &longer] {
        check.ok("clean up", sink.delete(key).await);
    }
}

/// [`WriteMode::Create`] writes a free key, and refuses with
/// [`StorageError::AlreadyExists`] at commit when the key is taken, leaving the stored object
/// as it was and nothing else behind; for small objects and for streamed multi-part ones, and
/// when the other write committed while this one was in progress.
pub async fn create_never_replaces(sink: &dyn Sink) {
    let check = Check::new(sink, "create_never_replaces");
    let key = check.key("object");
    let first = pattern(5000, 30);
    check.ok(
        "first create",
        sink.put_with(&key, Bytes::from(first.clone()), WriteMode::Create)
            .await,
    );
    check.expect_content(&key, &first).await;
    match sink
        .put_with(&key, Bytes::from(pattern(100, 31)), WriteMode::Create)
        .await
    {
        Err(StorageError::AlreadyExists { key: taken }) if taken == key => {}
        other => check.fail(format!(
            "second create of {key:?}: expected AlreadyExists, got {other:?}"
        )),
    }
    check.expect_content(&key, &first).await;

    // Two streamed writes of one free key in flight at once: the first commit wins, the
    // second fails without touching it (a large object: multipart on S3).
    let raced = check.key("raced");
    let mut a = check.ok(
        "writer a",
        sink.writer_with(&raced, WriteMode::Create).await,
    );
    let mut b = check.ok(
        "writer b",
        sink.writer_with(&raced, WriteMode::Create).await,
    );
    let a_data = pattern(LARGE_OBJECT_SIZE, 32);
    check.write(&mut a, &raced, &a_data).await;
    check
        .write(&mut b, &raced, &pattern(LARGE_OBJECT_SIZE, 33))
        .await;
    check.ok("commit a", a.commit().await);
    match b.commit().await {
        Err(StorageError::AlreadyExists { .. }) => {}
        other => check.fail(format!(
            "commit of a second create of {raced:?}: expected AlreadyExists, got {other:?}"
        )),
    }
    check.expect_content(&raced, &a_data).await;
    check
        .expect_keys(&check.prefix, &[key.as_str(), raced.as_str()])
        .await;
    check.cleanup().await;
}

/// While a writer is open, its key is neither readable nor listed; after commit it is.
pub async fn open_writer_is_invisible_until_commit(sink: &dyn Sink) {
    let check = Check::new(sink, "open_writer_is_invisible_until_commit");
    let key = check.key("in-progress");
    let mut writer = check.ok("writer", sink.writer(&key).await);
    check.write(&mut writer, &key, &pattern(70_000, 5)).await;
    if let Err(error) = writer.flush().await {
        check.fail(format!("flush of {key:?}: {error}"));
    }
    check.expect_not_found("head while writing", sink.head(&key).await);
    check.expect_keys(&check.prefix, &[]).await;
    check.ok("commit", writer.commit().await);
    check.expect_keys(&check.prefix, &[key.as_str()]).await;
    check.cleanup().await;
}

/// Dropping an uncommitted writer leaves nothing: no object, nothing listed, and an existing
/// object under the key keeps its old content.
pub async fn dropped_writer_leaves_nothing(sink: &dyn Sink) {
    let check = Check::new(sink, "dropped_writer_leaves_nothing");
    let new = check.key("new");
    let mut writer = check.ok("writer", sink.writer(&new).await);
    check.write(&mut writer, &new, &pattern(300_000, 6)).await;
    drop(writer);
    check.expect_not_found("head after drop", sink.head(&new).await);
    check.expect_keys(&check.prefix, &[]).await;

    let existing = check.key("existing");
    let old = pattern(10, 7);
    check.ok("put", sink.put(&existing, Bytes::from(old.clone())).await);
    let mut writer = check.ok("writer", sink.writer(&existing).await);
    check
        .write(&mut writer, &existing, &pattern(300_000, 8))
        .await;
    drop(writer);
    check.expect_content(&existing, &old).await;
    check.expect_keys(&check.prefix, &[existing.as_str()]).await;
    check.cleanup().await;
}

/// Aborting a writer leaves nothing: no object, nothing listed, and an existing object under
/// the key keeps its old content.
pub async fn aborted_writer_leaves_nothing(sink: &dyn Sink) {
    let check = Check::new(sink, "aborted_writer_leaves_nothing");
    let new = check.key("new");
    let mut writer = check.ok("writer", sink.writer(&new).await);
    check.write(&mut writer, &new, &pattern(300_000, 9)).await;
    check.ok("abort", writer.abort().await);
    check.expect_not_found("head after abort", sink.head(&new).await);
    check.expect_keys(&check.prefix, &[]).await;

    let existing = check.key("existing");
    let old = pattern(10, 10);
    check.ok("put", sink.put(&existing, Bytes::from(old.clone())).await);
    let mut writer = check.ok("writer", sink.writer(&existing).await);
    check
        .write(&mut writer, &existing, &pattern(300_000, 11))
        .await;
    check.ok("abort", writer.abort().await);
    check.expect_content(&existing, &old).await;
    check.expect_keys(&check.prefix, &[existing.as_str()]).await;
    check.cleanup().await;
}

/// `get`, `head` and `get_bytes` of an absent key are [`StorageError::NotFound`], also when a
/// folder of that name exists.
pub async fn missing_key_is_not_found(sink: &dyn Sink) {
    let check = Check::new(sink, "missing_key_is_not_found");
    let missing = check.key("missing");
    check.expect_not_found("get", sink.get(&missing).await.map(drop));
    check.expect_not_found("head", sink.head(&missing).await);
    check.expect_not_found("get_bytes", sink.get_bytes(&missing, 10).await);

    check.ok(
        "put",
        sink.put(&check.key("folder/inside"), Bytes::new()).await,
    );
    let folder = check.key("folder");
    check.expect_not_found("get of a folder", sink.get(&folder).await.map(drop));
    check.expect_not_found("head of a folder", sink.head(&folder).await);
    check.cleanup().await;
}

/// After `delete`, the key is gone (and deleting a folder name deletes nothing).
pub async fn delete_removes_object(sink: &dyn Sink) {
    let check = Check::new(sink, "delete_removes_object");
    let key = check.key("folder/object");
    let other = check.key("folder/other");
    check.ok("put", sink.put(&key, Bytes::from_static(b"data")).await);
    check.ok("put", sink.put(&other, Bytes::from_static(b"kept")).await);
    check.ok("delete", sink.delete(&key).await);
    check.expect_not_found("get after delete", sink.get(&key).await.map(drop));
    check.expect_not_found("head after delete", sink.head(&key).await);
    check.ok(
        "delete of a folder name",
        sink.delete(&check.key("folder")).await,
    );
    check.expect_keys(&check.prefix, &[other.as_str()]).await;
    check.expect_content(&other, b"kept").await;
    check.cleanup().await;
}

/// Deleting an absent key succeeds.
pub async fn delete_missing_key_is_ok(sink: &dyn Sink) {
    let check = Check::new(sink, "delete_missing_key_is_ok");
    check.ok(
        "delete of a missing key",
        sink.delete(&check.key("missing")).await,
    );
    let nested = check.key("no/such/folder/object");
    check.ok("delete in a missing folder", sink.delete(&nested).await);
    check.ok("second delete", sink.delete(&check.key("missing")).await);
}

/// `list` is a plain string prefix match over nested folders, sorted by key, and includes
/// each object's size.
pub async fn list_filters_by_prefix_and_sorts(sink: &dyn Sink) {
    let check = Check::new(sink, "list_filters_by_prefix_and_sorts");
    let relative = [
        "db/b.sql",
        "db/a.sql",
        "db/ab.sql",
        "db/nested/deeper/c.sql",
        "db.txt",
        "dbx/d.sql",
        "other/e.sql",
    ];
    // Written out of order; sizes differ so a mixed-up size is caught.
    for (index, name) in relative.iter().enumerate() {
        let key = check.key(name);
        check.ok("put", sink.put(&key, Bytes::from(pattern(index, 12))).await);
    }
    let keys = |names: &[&str]| names.iter().map(|name| check.key(name)).collect::<Vec<_>>();

    let folder = check.list(&check.key("db/")).await;
    let expected = keys(&[
        "db/a.sql",
        "db/ab.sql",
        "db/b.sql",
        "db/nested/deeper/c.sql",
    ]);
    check.expect_listed(&check.key("db/"), &folder, &expected);
    for meta in &folder {
        let index = relative
            .iter()
            .position(|name| check.key(name) == meta.key)
            .unwrap_or_else(|| check.fail(format!("unexpected key {:?}", meta.key)));
        check.expect_meta(meta, &meta.key, index as u64);
    }

    let partial = check.key("db/a");
    let expected = keys(&["db/a.sql", "db/ab.sql"]);
    check.expect_listed(&partial, &check.list(&partial).await, &expected);

    let string_prefix = check.key("db");
    let expected = keys(&[
        "db.txt",
        "db/a.sql",
        "db/ab.sql",
        "db/b.sql",
        "db/nested/deeper/c.sql",
        "dbx/d.sql",
    ]);
    check.expect_listed(&string_prefix, &check.list(&string_prefix).await, &expected);

    let nested = check.key("db/nested/");
    let expected = keys(&["db/nested/deeper/c.sql"]);
    check.expect_listed(&nested, &check.list(&nested).await, &expected);

    let mut all = keys(&relative);
    all.sort();
    check.expect_listed(&check.prefix, &check.list(&check.prefix).await, &all);

    let missing = check.key("no-such-folder/");
    check.expect_listed(&missing, &check.list(&missing).await, &[]);
    let exact = check.key("db/a.sql");
    check.expect_listed(&exact, &check.list(&exact).await, &keys(&["db/a.sql"]));

    check.cleanup().await;
}

/// `copy` duplicates an object (into a new folder too), replaces an existing target, leaves
/// the source alone, and fails with [`StorageError::NotFound`] for a missing source.
pub async fn copy_duplicates_object(sink: &dyn Sink) {
    let check = Check::new(sink, "copy_duplicates_object");
    let source = check.key("source.bin");
    let data = pattern(700_001, 13);
    check.ok("put", sink.put(&source, Bytes::from(data.clone())).await);

    let target = check.key("copies/target.bin");
    check.ok("copy", sink.copy(&source, &target).await);
    check.expect_content(&target, &data).await;
    check.expect_content(&source, &data).await;
    let meta = check.ok("head of the copy", sink.head(&target).await);
    check.expect_meta(&meta, &target, data.len() as u64);

    let replacement = pattern(33, 14);
    let other = check.key("other.bin");
    check.ok(
        "put",
        sink.put(&other, Bytes::from(replacement.clone())).await,
    );
    check.ok(
        "copy onto an existing key",
        sink.copy(&other, &target).await,
    );
    check.expect_content(&target, &replacement).await;

    check.ok("delete of the source", sink.delete(&source).await);
    check.expect_content(&target, &replacement).await;

    let missing = check.key("missing");
    check.expect_not_found(
        "copy of a missing key",
        sink.copy(&missing, &check.key("never")).await,
    );
    check.expect_not_found(
        "head of a failed copy",
        sink.head(&check.key("never")).await,
    );
    check.cleanup().await;
}

/// Every operation refuses each of [`INVALID_KEYS`] with [`StorageError::InvalidKey`]
/// (before doing anything), and `list` refuses escaping or absolute prefixes.
pub async fn invalid_keys_are_rejected(sink: &dyn Sink) {
    let check = Check::new(sink, "invalid_keys_are_rejected");
    let valid = check.key("valid");
    check.ok("put", sink.put(&valid, Bytes::from_static(b"v")).await);
    for &bad in INVALID_KEYS {
        check.expect_invalid(bad, "writer", sink.writer(bad).await.map(drop));
        check.expect_invalid(bad, "put", sink.put(bad, Bytes::new()).await);
        check.expect_invalid(bad, "get", sink.get(bad).await.map(drop));
        check.expect_invalid(bad, "get_bytes", sink.get_bytes(bad, 10).await);
        check.expect_invalid(bad, "head", sink.head(bad).await);
        check.expect_invalid(bad, "delete", sink.delete(bad).await);
        check.expect_invalid(bad, "copy from", sink.copy(bad, &valid).await);
        check.expect_invalid(bad, "copy to", sink.copy(&valid, bad).await);
    }
    for bad in ["../", "..", "/", "/abs", "a/../", "x\\y"] {
        check.expect_invalid(bad, "list", sink.list(bad).await);
    }
    check.expect_content(&valid, b"v").await;
    check.expect_keys(&check.prefix, &[valid.as_str()]).await;
    check.cleanup().await;
}

/// `get_bytes` returns objects up to the limit and refuses larger ones with
/// [`StorageError::TooLarge`].
pub async fn get_bytes_enforces_limit(sink: &dyn Sink) {
    let check = Check::new(sink, "get_bytes_enforces_limit");
    let key = check.key("manifest.json");
    let data = pattern(100, 15);
    check.ok("put", sink.put(&key, Bytes::from(data.clone())).await);
    let read = check.ok("get_bytes at the limit", sink.get_bytes(&key, 100).await);
    if read != data {
        check.fail(format!("get_bytes of {key:?} returned different bytes"));
    }
    match sink.get_bytes(&key, 99).await {
        Err(StorageError::TooLarge {
            key: reported,
            limit: 99,
        }) if reported == key => {}
        other => check.fail(format!(
            "get_bytes of the 100-byte {key:?} with limit 99 should be TooLarge, got {:?}",
            other.map(|bytes| bytes.len())
        )),
    }
    let empty = check.key("empty");
    check.ok("put", sink.put(&empty, Bytes::new()).await);
    let read = check.ok("get_bytes with limit 0", sink.get_bytes(&empty, 0).await);
    if !read.is_empty() {
        check.fail(format!(
            "get_bytes of the empty {empty:?} returned {} bytes",
            read.len()
        ));
    }
    check.cleanup().await;
}

/// Keys with non-ASCII characters and spaces round-trip and list unchanged.
pub async fn unicode_and_space_keys_work(sink: &dyn Sink) {
    let check = Check::new(sink, "unicode_and_space_keys_work");
    let names = [
        "ünïcødé klasör/yedek dosyası ✓.sql.gz",
        "日本語/バックアップ 1.rdb",
        "with spaces/file name with spaces.txt",
        "emoji/💾 backup.enc",
    ];
    let mut keys = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let key = check.key(name);
        let data = pattern(index * 10 + 1, 16);
        check.ok("put", sink.put(&key, Bytes::from(data.clone())).await);
        check.expect_content(&key, &data).await;
        keys.push(key);
    }
    keys.sort();
    check.expect_listed(&check.prefix, &check.list(&check.prefix).await, &keys);
    check.cleanup().await;
}

/// One check run: the sink, the check's name for messages and its fresh key prefix.
struct Check<'a> {
    sink: &'a dyn Sink,
    name: &'static str,
    prefix: String,
}

impl<'a> Check<'a> {
    fn new(sink: &'a dyn Sink, name: &'static str) -> Self {
        let prefix = format!("conformance/{:016x}/{name}/", rand::random::<u64>());
        Self { sink, name, prefix }
    }

    /// `relative` under this check's prefix.
    fn key(&self, relative: &str) -> String {
        format!("{}{relative}", self.prefix)
    }

    fn fail(&self, message: impl Display) -> ! {
        panic!(
            "Sink conformance check `{}` failed on {}: {message}",
            self.name,
            self.sink.describe()
        )
    }

    fn ok<T>(&self, what: &str, result: Result<T>) -> T {
        result.unwrap_or_else(|error| self.fail(format!("{what}: unexpected error: {error}")))
    }

    fn expect_not_found<T>(&self, what: &str, result: Result<T>) {
        match result {
            Err(error) if error.is_not_found() => {}
            Err(error) => self.fail(format!("{what}: expected NotFound, got error: {error}")),
            Ok(_) => self.fail(format!("{what}: expected NotFound, but it succeeded")),
        }
    }

    fn expect_invalid<T>(&self, key: &str, what: &str, result: Result<T>) {
        match result {
            Err(StorageError::InvalidKey { .. }) => {}
            Err(error) => self.fail(format!(
                "{what} with invalid key {key:?}: expected InvalidKey, got error: {error}"
            )),
            Ok(_) => self.fail(format!(
                "{what} with invalid key {key:?}: expected InvalidKey, but it succeeded"
            )),
        }
    }

    fn expect_meta(&self, meta: &ObjectMeta, key: &str, size: u64) {
        if meta.key != key || meta.size != size {
            self.fail(format!(
                "expected metadata for {key:?} of {size} bytes, got {:?} of {} bytes",
                meta.key, meta.size
            ));
        }
    }

    async fn write(&self, writer: &mut Box<dyn ObjectWriter>, key: &str, data: &[u8]) {
        if let Err(error) = writer.write_all(data).await {
            self.fail(format!("writing {} bytes to {key:?}: {error}", data.len()));
        }
    }

    /// Reads `key` through `get` in small odd-sized reads and compares it with `expected`.
    async fn expect_content(&self, key: &str, expected: &[u8]) {
        let mut reader = self.ok(&format!("get of {key:?}"), self.sink.get(key).await);
        let mut content = Vec::with_capacity(expected.len());
        let mut buf = vec![0; 8191];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(read) => content.extend_from_slice(&buf[..read]),
                Err(error) => self.fail(format!("reading {key:?}: {error}")),
            }
        }
        if content != expected {
            let first_difference = content
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or(content.len().min(expected.len()));
            self.fail(format!(
                "{key:?} read back {} bytes, expected {} (first difference at byte \
                 {first_difference})",
                content.len(),
                expected.len()
            ));
        }
    }

    async fn list(&self, prefix: &str) -> Vec<ObjectMeta> {
        self.ok(&format!("list of {prefix:?}"), self.sink.list(prefix).await)
    }

    fn expect_listed(&self, prefix: &str, listed: &[ObjectMeta], expected: &[String]) {
        let keys: Vec<&str> = listed.iter().map(|meta| meta.key.as_str()).collect();
        if keys != expected {
            self.fail(format!(
                "list of {prefix:?} returned {keys:?}, expected {expected:?} (sorted by key)"
            ));
        }
    }

    async fn expect_keys(&self, prefix: &str, expected: &[&str]) {
        let expected: Vec<String> = expected.iter().map(|key| (*key).to_owned()).collect();
        self.expect_listed(prefix, &self.list(prefix).await, &expected);
    }

    /// Deletes everything under this check's prefix and checks that nothing is left.
    async fn cleanup(&self) {
        for meta in self.list(&self.prefix).await {
            self.ok(
                &format!("cleanup delete of {:?}", meta.key),
                self.sink.delete(&meta.key).await,
            );
        }
        self.expect_keys(&self.prefix, &[]).await;
    }
}

/// `len` deterministic pseudo-random bytes (xorshift64*), different for each `seed`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
