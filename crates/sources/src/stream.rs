//! Stream plumbing shared by every source and restore target.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;

/// What travels through a [`ChannelReader`]'s channel: a chunk of bytes, or the error that
/// ends the stream.
pub(crate) type Chunk = io::Result<Bytes>;

/// An `AsyncRead` over the chunks of a channel: what a thread or task produces (a child's
/// pipe, a tee to a parser) read as one byte stream. The end of the channel (every sender
/// dropped) is end of file; an `Err` chunk is a read error. Built on tokio-util's
/// [`StreamReader`].
pub(crate) struct ChannelReader(StreamReader<Chunks, Bytes>);

impl ChannelReader {
    /// Reads what is sent on the other end of `rx`.
    pub(crate) fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        Self(StreamReader::new(Chunks(rx)))
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// The receiver as a `Stream`.
struct Chunks(mpsc::Receiver<Chunk>);

impl Stream for Chunks {
    type Item = Chunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn chunks_read_as_one_stream_until_the_senders_are_gone() {
        let (tx, rx) = mpsc::channel(4);
        let producer = tokio::spawn(async move {
            for chunk in [&b"ab"[..], b"", b"cde"] {
                tx.send(Ok(Bytes::from_static(chunk))).await.unwrap();
            }
        });
        let mut out = Vec::new();
        ChannelReader::new(rx).read_to_end(&mut out).await.unwrap();
        producer.await.unwrap();
        assert_eq!(out, b"abcde");
    }

    #[tokio::test]
    async fn an_error_chunk_is_a_read_error_after_the_bytes_before_it() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(Bytes::from_static(b"xy"))).await.unwrap();
        tx.send(Err(io::Error::other("pipe broke"))).await.unwrap();
        drop(tx);
        let mut reader = ChannelReader::new(rx);
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).await.unwrap(), 2);
        let err = reader.read(&mut buf).await.unwrap_err();
        assert_eq!(err.to_string(), "pipe broke");
    }
}
