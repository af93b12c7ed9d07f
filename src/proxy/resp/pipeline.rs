//! A pipeline's commands, run together where they can: what each command touches, and the
//! waves that run at once.

use bytes::Bytes;
use futures_util::future::join_all;

use super::commands::{Flow, Session};
use super::parse::Parsed;

/// Runs a pipeline's commands, replies in order in `out`. Commands run together in waves:
/// a wave ends before a command that changes the connection, or that touches a key a command
/// of the wave touches where either of them writes it, so every command sees the effects of
/// the ones before it, as if they ran one by one.
pub(super) async fn run(session: &mut Session, batch: Vec<Parsed>, out: &mut Vec<u8>) -> Flow {
    let mut wave = Wave::default();
    for parsed in &batch {
        let args = match parsed {
            Parsed::Command(args) => args,
            Parsed::Refused(why) => {
                wave.run(session, out).await;
                let mut r = session.replies();
                r.error(&format!("ERR {why}"));
                out.extend_from_slice(&r.out);
                continue;
            }
        };
        match touches(args) {
            Touches::Connection => {
                wave.run(session, out).await;
                let mut r = session.replies();
                let flow = session.run_alone(args, &mut r);
                out.extend_from_slice(&r.out);
                if flow == Flow::Close {
                    return Flow::Close;
                }
            }
            Touches::Keys { keys, writes } => {
                let conflicts = keys
                    .iter()
                    .any(|k| wave.written.contains(k) || (writes && wave.read.contains(k)));
                if conflicts {
                    wave.run(session, out).await;
                }
                if writes {
                    wave.written.extend(keys);
                } else {
                    wave.read.extend(keys);
                }
                wave.commands.push(args);
            }
        }
    }
    wave.run(session, out).await;
    Flow::Continue
}

/// Commands that run at once, and the keys they read and write.
#[derive(Default)]
struct Wave<'a> {
    commands: Vec<&'a [Bytes]>,
    read: Vec<&'a [u8]>,
    written: Vec<&'a [u8]>,
}

impl Wave<'_> {
    /// Runs the wave's commands at once, their replies to `out` in order; empties the wave.
    async fn run(&mut self, session: &Session, out: &mut Vec<u8>) {
        if let [one] = self.commands[..] {
            let mut r = session.replies();
            session.run(one, &mut r).await;
            out.extend_from_slice(&r.out);
        } else if !self.commands.is_empty() {
            let runs = self.commands.iter().map(|args| async {
                let mut r = session.replies();
                session.run(args, &mut r).await;
                r.out
            });
            for reply in join_all(runs).await {
                out.extend_from_slice(&reply);
            }
        }
        self.commands.clear();
        self.read.clear();
        self.written.clear();
    }
}

/// What a command touches, for running the commands of a pipeline together: commands on
/// different keys run at once; one that writes a key another touches waits for it.
#[derive(Debug)]
enum Touches<'a> {
    /// It changes the connection (QUIT, AUTH, HELLO): it runs alone.
    Connection,
    Keys {
        keys: Vec<&'a [u8]>,
        writes: bool,
    },
}

/// What `args` touch.
fn touches(args: &[Bytes]) -> Touches<'_> {
    let name = &args[0];
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    let keys = |writes: bool, step: usize| Touches::Keys {
        keys: args.iter().skip(1).step_by(step).map(|k| &k[..]).collect(),
        writes,
    };
    if is("QUIT") || is("AUTH") || is("HELLO") {
        Touches::Connection
    } else if is("GET") || is("MGET") || is("EXISTS") {
        keys(false, 1)
    } else if is("SET") || is("GETDEL") {
        Touches::Keys {
            keys: args.get(1).map(|k| &k[..]).into_iter().collect(),
            writes: true,
        }
    } else if is("DEL") || is("UNLINK") {
        keys(true, 1)
    } else if is("MSET") {
        keys(true, 2)
    } else {
        Touches::Keys {
            keys: Vec::new(),
            writes: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(words: &[&str]) -> Option<(Vec<String>, bool)> {
        let args: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        match touches(&args) {
            Touches::Connection => None,
            Touches::Keys { keys, writes } => Some((
                keys.iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect(),
                writes,
            )),
        }
    }

    #[test]
    fn what_each_command_touches() {
        let owned =
            |keys: &[&str], writes| Some((keys.iter().map(|k| k.to_string()).collect(), writes));
        assert_eq!(keys_of(&["get", "k"]), owned(&["k"], false));
        assert_eq!(keys_of(&["MGET", "a", "b"]), owned(&["a", "b"], false));
        assert_eq!(keys_of(&["SET", "k", "v", "EX", "5"]), owned(&["k"], true));
        assert_eq!(
            keys_of(&["MSET", "a", "1", "b", "2"]),
            owned(&["a", "b"], true)
        );
        assert_eq!(keys_of(&["DEL", "a", "b"]), owned(&["a", "b"], true));
        assert_eq!(keys_of(&["PING"]), owned(&[], false));
        for alone in ["QUIT", "auth", "HELLO"] {
            assert_eq!(keys_of(&[alone]), None, "{alone}");
        }
    }
}
