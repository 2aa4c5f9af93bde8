//! Runs the Sink conformance suite against every sink of this crate.

use backup_storage::{conformance, LocalSink, MemorySink};

#[tokio::test]
async fn local_sink_passes_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path().join("backups")).unwrap();
    conformance::run_all(&sink).await;
}

#[tokio::test]
async fn memory_sink_passes_conformance_suite() {
    let sink = MemorySink::new();
    conformance::run_all(&sink).await;
}

#[tokio::test]
async fn memory_sink_clones_share_objects() {
    use backup_storage::Sink;
    let sink = MemorySink::default();
    let clone = sink.clone();
    sink.put("a/b", bytes::Bytes::from_static(b"shared"))
        .await
        .unwrap();
    assert_eq!(clone.get_bytes("a/b", 100).await.unwrap(), "shared");
}
