//! A TCP relay in front of a node that can cut it off like a network partition: while cut,
//! the connections it carried are broken and new ones are accepted and then black-holed (a
//! request sent on them is never answered), so what was in flight is lost, not delivered
//! late. Healed, it forwards again on new connections.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a forwarding thread looks whether the relay was cut.
const LOOK_EVERY: Duration = Duration::from_millis(20);

pub struct Relay {
    pub addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    cut: AtomicBool,
    /// Changes at every cut and heal: connections of an older epoch close.
    epoch: AtomicU64,
    stopped: AtomicBool,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            while !shared.stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let state = shared.clone();
                        std::thread::spawn(move || carry(client, target, &state));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Relay { addr, state }
    }

    /// Breaks every connection and black-holes new ones.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Forwards again (on new connections).
    pub fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
        self.state.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Relaxed);
        self.state.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// One client connection: forwarded while the relay's epoch lasts, or held unanswered if the
/// relay is cut; closed when the epoch ends.
fn carry(client: TcpStream, target: SocketAddr, state: &Arc<State>) {
    let epoch = state.epoch.load(Ordering::SeqCst);
    let alive = || state.epoch.load(Ordering::SeqCst) == epoch;
    if state.cut.load(Ordering::SeqCst) {
        while alive() {
            std::thread::sleep(LOOK_EVERY);
        }
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let state2 = state.clone();
    let back = std::thread::spawn(move || pump(s2, c2, epoch, &state2));
    pump(client, server, epoch, state);
    let _ = back.join();
}

/// Copies `from` to `to` until either closes or the epoch ends; then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream, epoch: u64, state: &State) {
    from.set_read_timeout(Some(LOOK_EVERY)).unwrap();
    let mut buf = [0u8; 16 * 1024];
    while state.epoch.load(Ordering::SeqCst) == epoch {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
