//! A TCP proxy in front of a broker that a test can cut: every open connection is closed at
//! once, as a flaky network would, and the target can move (a restarted broker's new port).
//! It can also hold the broker's answers back for a while, as a slow broker would.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

pub struct Proxy {
    pub address: String,
    target: Arc<Mutex<String>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    held: Arc<(Mutex<bool>, Condvar)>,
    held_requests: Arc<(Mutex<bool>, Condvar)>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let address = listener.local_addr().unwrap().to_string();
        let target = Arc::new(Mutex::new(String::new()));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new((Mutex::new(false), Condvar::new()));
        let held_requests = Arc::new((Mutex::new(false), Condvar::new()));
        {
            let held_requests = held_requests.clone();
            let target = target.clone();
            let open = open.clone();
            let held = held.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    let destination = target.lock().unwrap().clone();
                    let Ok(server) = TcpStream::connect(&destination) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    {
                        let mut open = open.lock().unwrap();
                        open.push(client.try_clone().unwrap());
                        open.push(server.try_clone().unwrap());
                    }
                    pipe(
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        Some(held_requests.clone()),
                    );
                    pipe(server, client, Some(held.clone()));
                }
            });
        }
        Proxy {
            address,
            target,
            open,
            held,
            held_requests,
        }
    }

    pub fn port(&self) -> u16 {
        self.address.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn set_target(&self, address: &str) {
        *self.target.lock().unwrap() = address.to_string();
    }

    /// Stops passing the broker's answers on (requests still reach it) until `release`.
    pub fn hold_answers(&self) {
        *self.held.0.lock().unwrap() = true;
    }

    /// Passes on every answer held back, and those that follow.
    pub fn release(&self) {
        *self.held.0.lock().unwrap() = false;
        self.held.1.notify_all();
    }

    /// Stops passing requests on to the broker until `release_requests`; a `cut` meanwhile
    /// loses them, as a network that drops a request would.
    pub fn hold_requests(&self) {
        *self.held_requests.0.lock().unwrap() = true;
    }

    pub fn release_requests(&self) {
        *self.held_requests.0.lock().unwrap() = false;
        self.held_requests.1.notify_all();
    }

    /// Closes every connection open through the proxy.
    pub fn cut(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, held: Option<Arc<(Mutex<bool>, Condvar)>>) {
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(held) = &held {
                        let (flag, released) = &**held;
                        let mut holding = flag.lock().unwrap();
                        while *holding {
                            holding = released.wait(holding).unwrap();
                        }
                    }
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
