//! The master's side of the framed control-plane protocol (`mooncake_proto::frame`),
//! served on the rpc port next to gRPC: a connection whose first bytes are the frame
//! magic is handed here, anything else goes to HTTP/2.
//!
//! One dispatch for both protocols: each request frame becomes the `http::Request` a
//! gRPC call would have produced (path, `content-type: application/grpc`, the message
//! behind its 5-byte gRPC prefix) and goes through the same tower service
//! (`MasterServer`, or the HA `FencedService` with its fence and replication wait);
//! the answer's message and status (from trailers, or a trailers-only answer) become
//! the answer frame. One task per connection, calls handled inline, one call in flight.

use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use mooncake_proto::frame::{self, FrameError, MAGIC};
use mooncake_proto::status::ERROR_CODE_KEY;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codegen::http::{header, HeaderValue, Request, Response, Uri};
use tonic::codegen::Service;
use tonic::{Code, Status};

/// Whether the connection speaks the framed protocol: its first bytes (peeked, not
/// consumed) are a prefix of the magic. Waits for the client's first bytes.
pub async fn is_framed(stream: &TcpStream) -> bool {
    let mut first = [0u8; MAGIC.len()];
    match stream.peek(&mut first).await {
        Ok(n) if n > 0 => first[..n] == MAGIC[..n],
        _ => false,
    }
}

/// A request or answer body of at most one chunk and no trailers.
pub(crate) struct OneChunk(Option<Bytes>);

impl HttpBody for OneChunk {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// Serves one framed connection with `svc` until the client closes it, a frame is
/// bad, or `stopping` turns true (a call in progress is finished and answered first).
pub async fn serve_connection<S>(stream: TcpStream, mut svc: S, mut stopping: watch::Receiver<bool>)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    // Buffered reads: a frame's length and body usually arrive in one syscall.
    let mut stream = BufReader::with_capacity(16 * 1024, stream);
    let mut magic = [0u8; MAGIC.len()];
    let read = tokio::select! {
        biased;
        _ = stopping.wait_for(|s| *s) => return,
        r = stream.read_exact(&mut magic) => r,
    };
    if read.is_err() || magic != MAGIC {
        return;
    }
    let mut out = Vec::with_capacity(4096);
    loop {
        let read = tokio::select! {
            biased;
            _ = stopping.wait_for(|s| *s) => return,
            r = read_frame(&mut stream) => r,
        };
        let buf = match read {
            Ok(b) => b,
            Err(ReadError::Closed) => return,
            Err(ReadError::Frame(e)) => {
                // Answer why, then close: the stream cannot be resynchronised.
                out.clear();
                let msg = format!("framed rpc: {e}");
                let code = match e {
                    FrameError::TooLarge { .. } => Code::ResourceExhausted,
                    _ => Code::InvalidArgument,
                };
                if frame::encode_answer(code as u32, 0, &msg, b"", &mut out).is_ok() {
                    let _ = stream.write_all(&out).await;
                }
                tracing::warn!("{msg}");
                return;
            }
        };
        out.clear();
        let answered = match to_http(buf) {
            Ok(req) => {
                if std::future::poll_fn(|cx| svc.poll_ready(cx)).await.is_err() {
                    return;
                }
                let resp = match svc.call(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                answer_frame(resp, &mut out).await
            }
            Err(e) => Err(Status::invalid_argument(format!("framed rpc: {e}"))),
        };
        if let Err(status) = answered {
            out.clear();
            if let Err(e) = encode_status(&status, &mut out) {
                tracing::warn!("framed rpc: cannot encode an answer: {e}");
                return;
            }
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
        if out.capacity() > 1 << 20 {
            out = Vec::with_capacity(4096);
        }
    }
}

enum ReadError {
    Closed,
    Frame(FrameError),
}

async fn read_frame(stream: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut head = [0u8; frame::LEN_BYTES];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|_| ReadError::Closed)?;
    let len = frame::frame_len(head).map_err(ReadError::Frame)?;
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|_| ReadError::Closed)?;
    Ok(buf)
}

/// The gRPC request a request frame stands for; the message gets its 5-byte prefix
/// written over the bytes before it (the path, copied out first), so it is not copied.
fn to_http(mut buf: Vec<u8>) -> Result<Request<Body>, FrameError> {
    let (uri, at) = {
        let r = frame::decode_request(&buf)?;
        let uri = Uri::try_from(r.path).map_err(|_| FrameError::Malformed("bad method path"))?;
        (uri, r.message_at)
    };
    let len = buf.len() - at;
    let body = if at >= 5 {
        frame::grpc_prefix(len, &mut buf[at - 5..at]);
        Bytes::from(buf).slice(at - 5..)
    } else {
        let mut b = vec![0u8; 5];
        frame::grpc_prefix(len, &mut b);
        b.extend_from_slice(&buf[at..]);
        Bytes::from(b)
    };
    let mut req = Request::new(Body::new(OneChunk(Some(body))));
    *req.uri_mut() = uri;
    *req.method_mut() = tonic::codegen::http::Method::POST;
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    Ok(req)
}

fn encode_status(status: &Status, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let error_code = status
        .metadata()
        .get(ERROR_CODE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .unwrap_or(0);
    frame::encode_answer(status.code() as u32, error_code, status.message(), b"", out)
}

/// Collects a gRPC answer into an answer frame in `out`; `Err` is the status to send
/// instead (the call failed, or its answer was not one well-formed message).
async fn answer_frame(resp: Response<Body>, out: &mut Vec<u8>) -> Result<(), Status> {
    if let Some(status) = Status::from_header_map(resp.headers()) {
        // Trailers-only: no message.
        if status.code() != Code::Ok {
            return Err(status);
        }
    }
    let mut body = resp.into_body();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let f = f.map_err(|e| Status::internal(format!("answer body: {e}")))?;
        match f.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => {
                if let Ok(t) = f.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    if let Some(status) = trailers.as_ref().and_then(Status::from_header_map) {
        if status.code() != Code::Ok {
            return Err(status);
        }
    }
    if data.len() < 5 || data[0] != 0 {
        return Err(Status::internal(
            "framed rpc: answer is not one gRPC message",
        ));
    }
    let len = u32::from_be_bytes(data[1..5].try_into().expect("four bytes")) as usize;
    if data.len() != 5 + len {
        return Err(Status::internal(
            "framed rpc: answer is not one gRPC message",
        ));
    }
    frame::encode_answer(0, 0, "", &data[5..], out)
        .map_err(|e| Status::resource_exhausted(format!("framed rpc: {e}")))
}
