//! The body type the transform hands on: the original body, or the bytes a rule rendered.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A body that went through a [`TransformBodyLayer`]: the original body, streamed untouched,
    /// or the bytes a rule rendered (or a rejection).
    pub struct TransformedBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Original {
            #[pin]
            body: B,
        },
        Bytes {
            bytes: Option<Bytes>,
        },
    }
}

impl<B> TransformedBody<B> {
    /// `body`, passed on as it is.
    pub fn original(body: B) -> Self {
        Self {
            kind: Kind::Original { body },
        }
    }

    /// A body of `bytes`.
    pub fn bytes(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Bytes {
                bytes: Some(bytes).filter(|b| !b.is_empty()),
            },
        }
    }
}

impl<B> From<Bytes> for TransformedBody<B> {
    fn from(bytes: Bytes) -> Self {
        Self::bytes(bytes)
    }
}

impl<B> std::fmt::Debug for TransformedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Original { .. } => f.write_str("TransformedBody::Original"),
            Kind::Bytes { bytes } => f
                .debug_tuple("TransformedBody::Bytes")
                .field(&bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for TransformedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Original { body } => body.poll_frame(cx),
            KindProj::Bytes { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Original { body } => body.is_end_stream(),
            Kind::Bytes { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Original { body } => body.size_hint(),
            Kind::Bytes { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
