//! Copies one HTTP/2 body (data frames, then trailers or the end of the stream) from a received
//! stream to a sent one, respecting both sides' flow control.
//!
//! A hand-written future rather than an `async fn`: it is `Unpin`, so a stream's future holds it
//! inline and can still move it into a task of its own (a request body that keeps streaming after
//! the response headers) without boxing it first; and its state is the two stream handles and one
//! byte, where the `async fn` kept every local across each await.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};

use crate::body::grpc_status;

#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("reading: {0}")]
    Recv(h2::Error),
    #[error("writing: {0}")]
    Send(h2::Error),
    #[error("the receiving side closed the stream")]
    Closed,
}

/// Waits for send capacity before reading each next chunk, so at most one chunk per stream sits
/// in the proxy. A failure on either side resets the other side of the stream (a failed send
/// drops the receiving handle, which tells the sender we stopped reading). Notes the `grpc-status`
/// of the trailers it forwards.
pub struct BodyPipe {
    from: Option<RecvStream>,
    to: SendStream<Bytes>,
    trailers_grpc_status: Option<u32>,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first chunk goes out without waiting for send capacity: a new upstream stream gets its
    /// window only once the connection task opens it, and waiting would split the request's
    /// HEADERS and DATA into two writes. One chunk per stream is the bound either way.
    First,
    /// Capacity for at least one byte before reading the next chunk.
    Capacity,
    Data,
    Trailers,
    Done,
}

impl BodyPipe {
    pub fn new(from: RecvStream, to: SendStream<Bytes>) -> Self {
        Self {
            from: Some(from),
            to,
            trailers_grpc_status: None,
            state: State::First,
        }
    }

    /// The `grpc-status` of the trailers forwarded, if any.
    pub fn trailers_grpc_status(&self) -> Option<u32> {
        self.trailers_grpc_status
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PipeError>> {
        let Some(from) = self.from.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let to = &mut self.to;
        loop {
            match self.state {
                State::Capacity => {
                    to.reserve_capacity(1);
                    while to.capacity() == 0 {
                        match ready!(to.poll_capacity(cx)) {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Poll::Ready(Err(PipeError::Send(e))),
                            None => return Poll::Ready(Err(PipeError::Closed)),
                        }
                    }
                    self.state = State::Data;
                }
                State::First | State::Data => {
                    if let Poll::Ready(reason) = to.poll_reset(cx) {
                        return Poll::Ready(Err(match reason {
                            Ok(reason) => PipeError::Send(h2::Error::from(reason)),
                            Err(e) => PipeError::Send(e),
                        }));
                    }
                    match ready!(from.poll_data(cx)) {
                        Some(Ok(chunk)) => {
                            let len = chunk.len();
                            to.reserve_capacity(len);
                            let last = from.is_end_stream();
                            to.send_data(chunk, last).map_err(PipeError::Send)?;
                            let _ = from.flow_control().release_capacity(len);
                            if last {
                                return Poll::Ready(Ok(()));
                            }
                            self.state = State::Capacity;
                        }
                        Some(Err(e)) => return Poll::Ready(Err(PipeError::Recv(e))),
                        None => self.state = State::Trailers,
                    }
                }
                State::Trailers => {
                    let trailers = ready!(from.poll_trailers(cx)).map_err(PipeError::Recv)?;
                    return Poll::Ready(match trailers {
                        Some(trailers) => {
                            self.trailers_grpc_status = grpc_status(&trailers);
                            to.send_trailers(trailers).map_err(PipeError::Send)
                        }
                        None => to.send_data(Bytes::new(), true).map_err(PipeError::Send),
                    });
                }
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl Future for BodyPipe {
    type Output = Result<(), PipeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = ready!(this.step(cx));
        this.state = State::Done;
        if let Err(error) = &result {
            match error {
                // The receiver reset: tell the sender we stopped reading.
                PipeError::Send(_) | PipeError::Closed => drop(this.from.take()),
                PipeError::Recv(e) => this.to.send_reset(e.reason().unwrap_or(Reason::CANCEL)),
            }
        }
        Poll::Ready(result)
    }
}
