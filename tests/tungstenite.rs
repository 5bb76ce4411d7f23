//! std::io compatibility proven with an unmodified synchronous crate: a
//! tungstenite WebSocket server and client talking over ivy TcpStreams.

use std::time::Duration;

use ivy::net::{TcpListener, TcpStream};
use tungstenite::Message;

#[test]
fn websocket_round_trip_over_ivy_streams() {
    const CLIENTS: usize = 20;
    const MESSAGES: usize = 50;
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    let (server_total, client_total) = rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = ivy::spawn(move || {
            let mut sessions = Vec::new();
            for _ in 0..CLIENTS {
                let (stream, _) = listener.accept().unwrap();
                sessions.push(ivy::spawn(move || {
                    let mut ws = tungstenite::accept(stream).expect("server handshake");
                    let mut echoed = 0usize;
                    loop {
                        match ws.read().expect("server read") {
                            msg @ (Message::Text(_) | Message::Binary(_)) => {
                                echoed += msg.len();
                                ws.send(msg).expect("server send");
                            }
                            Message::Close(_) => break,
                            _ => {}
                        }
                    }
                    // Drive the close handshake to its end.
                    while ws.flush().is_ok() {
                        if ws.read().is_err() {
                            break;
                        }
                    }
                    echoed
                }));
            }
            sessions
                .into_iter()
                .map(|s| s.join().unwrap())
                .sum::<usize>()
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                ivy::spawn(move || {
                    let stream = TcpStream::connect(addr).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let url = format!("ws://{addr}/echo");
                    let (mut ws, response) =
                        tungstenite::client(url.as_str(), stream).expect("client handshake");
                    assert_eq!(response.status(), 101);
                    let mut total = 0;
                    for i in 0..MESSAGES {
                        let msg = if i % 2 == 0 {
                            Message::text(format!("client {c} message {i}"))
                        } else {
                            Message::binary(vec![(c + i) as u8; 1 + i * 100])
                        };
                        total += msg.len();
                        ws.send(msg.clone()).unwrap();
                        let back = ws.read().unwrap();
                        assert_eq!(back, msg);
                    }
                    ws.close(None).unwrap();
                    loop {
                        match ws.read() {
                            Ok(_) => continue,
                            Err(tungstenite::Error::ConnectionClosed) => break,
                            Err(e) => panic!("client close: {e}"),
                        }
                    }
                    total
                })
            })
            .collect();
        let client_total: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
        (server.join().unwrap(), client_total)
    });
    let expected: usize = (0..CLIENTS)
        .map(|c| {
            (0..MESSAGES)
                .map(|i| {
                    if i % 2 == 0 {
                        format!("client {c} message {i}").len()
                    } else {
                        1 + i * 100
                    }
                })
                .sum::<usize>()
        })
        .sum();
    assert_eq!(client_total, expected);
    assert_eq!(server_total, expected);
}
