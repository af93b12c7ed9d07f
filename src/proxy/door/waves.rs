//! A pipeline's commands, run together where they can.

use futures_util::future::join_all;

use super::{Flow, Protocol, Touches, FLUSH_AT};

/// The most commands in one wave: what a wave's replies may hold at once is bounded by it.
const MAX_WAVE: usize = 16;

/// Runs a pipeline's commands, replies in order in `out`, until `out` holds [`FLUSH_AT`]
/// bytes or more after a wave; the number of commands run. Commands run together in waves of
/// up to [`MAX_WAVE`]: a wave ends before a command that touches the connection, or that
/// touches a key a command of the wave touches where either of them writes it, so every
/// command sees the effects of the ones before it, as if they ran one by one.
pub(super) async fn run<P: Protocol>(
    protocol: &mut P,
    batch: &[P::Command],
    out: &mut Vec<u8>,
) -> (Flow, usize) {
    let mut wave = Wave::default();
    for (at, command) in batch.iter().enumerate() {
        if wave.commands.is_empty() && out.len() >= FLUSH_AT {
            return (Flow::Continue, at);
        }
        match protocol.touches(command) {
            Touches::Connection => {
                wave.run(protocol, out).await;
                if protocol.run_alone(command, out) == Flow::Close {
                    return (Flow::Close, at + 1);
                }
            }
            Touches::Keys { keys, writes } => {
                let conflicts = keys
                    .iter()
                    .any(|k| wave.written.contains(k) || (writes && wave.read.contains(k)));
                if conflicts || wave.commands.len() == MAX_WAVE {
                    wave.run(protocol, out).await;
                }
                if writes {
                    wave.written.extend(keys);
                } else {
                    wave.read.extend(keys);
                }
                wave.commands.push(command);
            }
        }
    }
    wave.run(protocol, out).await;
    (Flow::Continue, batch.len())
}

/// Commands that run at once, and the keys they read and write.
struct Wave<'a, C> {
    commands: Vec<&'a C>,
    read: Vec<&'a [u8]>,
    written: Vec<&'a [u8]>,
}

impl<C> Default for Wave<'_, C> {
    fn default() -> Self {
        Wave {
            commands: Vec::new(),
            read: Vec::new(),
            written: Vec::new(),
        }
    }
}

impl<'a, C> Wave<'a, C> {
    /// Runs the wave's commands at once, their replies to `out` in order; empties the wave.
    async fn run<P: Protocol<Command = C>>(&mut self, protocol: &P, out: &mut Vec<u8>) {
        if let [one] = self.commands[..] {
            out.extend_from_slice(&protocol.run(one).await);
        } else if !self.commands.is_empty() {
            for reply in join_all(self.commands.iter().map(|c| protocol.run(c))).await {
                out.extend_from_slice(&reply);
            }
        }
        self.commands.clear();
        self.read.clear();
        self.written.clear();
    }
}
