//! The upstream's response body on its way to the client, ended with an error when the
//! upstream goes quiet for longer than the idle timeout (a stalled stream would otherwise hold
//! the client and a connection forever).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body whose upstream may keep the client waiting for at most `idle` at a time. The clock
/// runs only while the body is asked for a frame and has none (a client slow to read is not the
/// upstream's silence), and the timer is only set then, so an answer that is already there
/// costs no timer at all.
pub(crate) struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    /// Since when the client has been waiting for the next frame, if it is.
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeout<B> {
    pub(crate) fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            waiting_since: None,
            timer: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting_since = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = *this.waiting_since.get_or_insert_with(Instant::now) + this.idle;
                let timer = match &mut this.timer {
                    Some(t) => {
                        if t.deadline() != deadline {
                            t.as_mut().reset(deadline);
                        }
                        t
                    }
                    None => this
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::warn!(
                            idle_ms = this.idle.as_millis() as u64,
                            "the provider's answer stalled; closing it"
                        );
                        Poll::Ready(Some(Err("the provider's answer stalled".into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's request body failed (bad chunked encoding, a connection cut mid-body): the
/// client's fault, whatever the upstream made of it.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body could not be read")]
pub(crate) struct BrokenRequestBody;

/// What went wrong with the client's body, when an upstream request failed because of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFault {
    /// Over the size limit.
    TooLarge,
    /// Not a well-formed body.
    Broken,
}

/// Looks through `e`'s causes for a fault of the client's body.
pub(crate) fn body_fault(e: &(dyn std::error::Error + 'static)) -> Option<BodyFault> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return Some(BodyFault::TooLarge);
        }
        if c.is::<BrokenRequestBody>() {
            return Some(BodyFault::Broken);
        }
        cause = c.source();
    }
    None
}

/// The client's body, at most `limit` bytes, its failures marked as the client's
/// ([`body_fault`] finds them).
pub(crate) fn client_body(body: axum::body::Body, limit: usize) -> axum::body::Body {
    use http_body_util::BodyExt as _;
    axum::body::Body::new(
        http_body_util::Limited::new(body, limit).map_err(|e| -> BoxError {
            if e.is::<http_body_util::LengthLimitError>() {
                e
            } else {
                Box::new(BrokenRequestBody)
            }
        }),
    )
}

/// What rewrites a body's bytes as they pass: it may hold back a tail that the next bytes could
/// change, and gives it out at the end.
pub(crate) trait Rewrite {
    /// Reads `data`, writing to `out` what may go out now.
    fn push(&mut self, data: &[u8], out: &mut Vec<u8>);
    /// The body has ended: writes what was held back.
    fn finish(&mut self, out: &mut Vec<u8>);
}

/// The key's masker: an error body that quotes the key (`"Incorrect API key provided:
/// sk-..."`) reaches the client with the key's hint instead; only a tail that could still
/// become the key is held back, so streaming is kept.
impl Rewrite for keyward_core::mask::Masker {
    fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        keyward_core::mask::Masker::push(self, data, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        keyward_core::mask::Masker::finish(self, out);
    }
}

/// A body rewritten as it passes by `R` (the key masked, a usage chunk taken out). What `R`
/// held back goes out when the body ends, or before its trailers (which are then dropped if
/// there was any: a rewritten answer's text matters more to the client than its trailers).
pub(crate) struct Rewritten<B, R> {
    inner: B,
    rewrite: R,
    /// What was held back is out (the upstream's body has ended).
    flushed: bool,
}

impl<B, R> Rewritten<B, R> {
    pub(crate) fn new(inner: B, rewrite: R) -> Self {
        Self {
            inner,
            rewrite,
            flushed: false,
        }
    }
}

impl<B, R> Body for Rewritten<B, R>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    R: Rewrite + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.flushed {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    this.flushed = true;
                    let mut out = Vec::new();
                    this.rewrite.finish(&mut out);
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    let mut out = Vec::with_capacity(data.len());
                    this.rewrite.push(&data, &mut out);
                    // Everything may be held back: ask again.
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Err(trailers) => {
                    let mut out = Vec::new();
                    this.rewrite.finish(&mut out);
                    this.flushed = true;
                    if out.is_empty() {
                        return Poll::Ready(Some(Ok(trailers)));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.flushed
    }

    fn size_hint(&self) -> SizeHint {
        // Rewriting changes the length.
        SizeHint::default()
    }
}
