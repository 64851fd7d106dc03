//! gRPC through the proxy with a real tonic client and server: unary, server streaming,
//! bidirectional streaming, trailers and error statuses, through one proxy's outbound side and
//! through a mesh hop (client → outbound of proxy A → inbound of proxy B → server).

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use http::uri::PathAndQuery;
use support::*;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

const AUTHORITY: &str = "grpc.test:80";

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;
type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// `test.Echo`: Unary echoes (or fails with code `count` when text is "fail"); ServerStream sends
/// `count` messages (then fails with DATA_LOSS when text is "fail-after"); Bidi upper-cases each.
#[derive(Clone)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

struct Unary;
impl tonic::server::UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFuture<Result<tonic::Response<Msg>, Status>>;
    fn call(&mut self, request: tonic::Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let msg = request.into_inner();
            if msg.text == "fail" {
                let mut status = Status::new(Code::from(msg.count as i32), "asked to fail");
                status
                    .metadata_mut()
                    .insert("x-detail", "kept".parse().unwrap());
                return Err(status);
            }
            let mut response = tonic::Response::new(msg);
            response
                .metadata_mut()
                .insert("x-header", "h".parse().unwrap());
            Ok(response)
        })
    }
}

struct ServerStream;
impl tonic::server::ServerStreamingService<Msg> for ServerStream {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = BoxFuture<Result<tonic::Response<MsgStream>, Status>>;
    fn call(&mut self, request: tonic::Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let msg = request.into_inner();
            let fail = msg.text == "fail-after";
            let items = futures::stream::iter(0..msg.count).map(|i| {
                Ok(Msg {
                    text: format!("item {i}"),
                    count: i,
                })
            });
            let tail = futures::stream::iter(fail.then(|| Err(Status::data_loss("stream broke"))));
            Ok(tonic::Response::new(
                Box::pin(items.chain(tail)) as MsgStream
            ))
        })
    }
}

struct Bidi;
impl tonic::server::StreamingService<Msg> for Bidi {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = BoxFuture<Result<tonic::Response<MsgStream>, Status>>;
    fn call(&mut self, request: tonic::Request<tonic::Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let input = request.into_inner();
            let output = input.map(|m| {
                m.map(|m| Msg {
                    text: m.text.to_uppercase(),
                    count: m.count,
                })
            });
            Ok(tonic::Response::new(Box::pin(output) as MsgStream))
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
            Ok(match req.uri().path() {
                "/test.Echo/Unary" => grpc.unary(Unary, req).await,
                "/test.Echo/ServerStream" => grpc.server_streaming(ServerStream, req).await,
                "/test.Echo/Bidi" => grpc.streaming(Bidi, req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

async fn start_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Echo)
            .serve_with_incoming(tokio_stream_from(listener)),
    );
    addr
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(s, _)| s);
        Some((accepted, listener))
    })
}

type Client = tonic::client::Grpc<tonic::transport::Channel>;

async fn client(proxy: std::net::SocketAddr) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))
        .unwrap()
        .origin(format!("http://{AUTHORITY}").parse().unwrap())
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn unary(client: &mut Client, msg: Msg) -> Result<tonic::Response<Msg>, Status> {
    client.ready().await.unwrap();
    client
        .unary(
            tonic::Request::new(msg),
            PathAndQuery::from_static("/test.Echo/Unary"),
            ProstCodec::default(),
        )
        .await
}

/// The two paths every case runs over.
async fn paths(server: std::net::SocketAddr) -> (Vec<ProxyProcess>, Vec<std::net::SocketAddr>) {
    let direct = ProxyProcess::start(
        &config_json(&[service_json("grpc", &[AUTHORITY], &[server])]),
        &[],
    )
    .await;
    let inbound =
        ProxyProcess::start(&config_json(&[]), &["--inbound-app", &server.to_string()]).await;
    let hop = ProxyProcess::start(
        &config_json(&[service_json(
            "grpc",
            &[AUTHORITY],
            &[inbound.inbound.unwrap()],
        )]),
        &[],
    )
    .await;
    let targets = vec![direct.outbound, hop.outbound];
    (vec![direct, inbound, hop], targets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_and_error_statuses_pass_through() {
    let server = start_server().await;
    let (_proxies, targets) = paths(server).await;
    for target in targets {
        let mut client = client(target).await;
        let response = unary(
            &mut client,
            Msg {
                text: "hello".into(),
                count: 7,
            },
        )
        .await
        .unwrap();
        assert_eq!(response.metadata().get("x-header").unwrap(), "h");
        assert_eq!(
            response.into_inner(),
            Msg {
                text: "hello".into(),
                count: 7
            }
        );
        for code in [
            Code::NotFound,
            Code::InvalidArgument,
            Code::Unavailable,
            Code::Internal,
        ] {
            let status = unary(
                &mut client,
                Msg {
                    text: "fail".into(),
                    count: code as u32,
                },
            )
            .await
            .unwrap_err();
            assert_eq!(status.code(), code, "{status:?}");
            assert_eq!(status.message(), "asked to fail");
            assert_eq!(status.metadata().get("x-detail").unwrap(), "kept");
        }
        // An unknown method: the server's own UNIMPLEMENTED comes back.
        client.ready().await.unwrap();
        let status = client
            .unary::<Msg, Msg, _>(
                tonic::Request::new(Msg::default()),
                PathAndQuery::from_static("/test.Echo/Nope"),
                ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_delivers_every_message_then_the_final_status() {
    let server = start_server().await;
    let (_proxies, targets) = paths(server).await;
    for target in targets {
        let mut client = client(target).await;
        for (text, expect_error) in [("ok", false), ("fail-after", true)] {
            client.ready().await.unwrap();
            let mut stream = client
                .server_streaming(
                    tonic::Request::new(Msg {
                        text: text.into(),
                        count: 500,
                    }),
                    PathAndQuery::from_static("/test.Echo/ServerStream"),
                    ProstCodec::<Msg, Msg>::default(),
                )
                .await
                .unwrap()
                .into_inner();
            let mut received = 0;
            let end = loop {
                match stream.message().await {
                    Ok(Some(msg)) => {
                        assert_eq!(msg.count, received);
                        received += 1;
                    }
                    Ok(None) => break None,
                    Err(status) => break Some(status),
                }
            };
            assert_eq!(received, 500);
            match end {
                None => assert!(!expect_error),
                Some(status) => {
                    assert!(expect_error, "{status:?}");
                    assert_eq!(status.code(), Code::DataLoss);
                    assert_eq!(status.message(), "stream broke");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_streams_are_not_buffered() {
    let server = start_server().await;
    let (_proxies, targets) = paths(server).await;
    for target in targets {
        let mut client = client(target).await;
        client.ready().await.unwrap();
        // Each message is sent only after the previous reply arrived: a proxy that buffered a
        // direction would deadlock here.
        let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
        let outgoing =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        tx.send(Msg {
            text: "m0".into(),
            count: 0,
        })
        .await
        .unwrap();
        let mut replies = client
            .streaming(
                tonic::Request::new(outgoing),
                PathAndQuery::from_static("/test.Echo/Bidi"),
                ProstCodec::<Msg, Msg>::default(),
            )
            .await
            .unwrap()
            .into_inner();
        for i in 0..50u32 {
            let reply = tokio::time::timeout(std::time::Duration::from_secs(5), replies.message())
                .await
                .expect("reply in time")
                .unwrap()
                .unwrap();
            assert_eq!(
                reply,
                Msg {
                    text: format!("M{i}"),
                    count: i
                }
            );
            tx.send(Msg {
                text: format!("m{}", i + 1),
                count: i + 1,
            })
            .await
            .unwrap();
        }
        drop(tx);
        let last = replies.message().await.unwrap().unwrap();
        assert_eq!(last.count, 50);
        assert!(replies.message().await.unwrap().is_none());
    }
}
