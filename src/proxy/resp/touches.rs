//! What each Redis command touches, so that a pipeline's commands on different keys run at
//! once.

use bytes::Bytes;

use crate::proxy::door::Touches;

/// What `args` touch.
pub(super) fn touches(args: &[Bytes]) -> Touches<'_> {
    let name = &args[0];
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    let keys = |writes: bool, step: usize| Touches::Keys {
        keys: args.iter().skip(1).step_by(step).map(|k| &k[..]).collect(),
        writes,
    };
    if is("QUIT") || is("AUTH") || is("HELLO") {
        Touches::Connection
    } else if is("GET") || is("MGET") || is("EXISTS") || is("TTL") {
        keys(false, 1)
    } else if is("SET") || is("GETDEL") || is("EXPIRE") {
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
        assert_eq!(keys_of(&["EXPIRE", "k", "10"]), owned(&["k"], true));
        assert_eq!(keys_of(&["ttl", "k"]), owned(&["k"], false));
        assert_eq!(keys_of(&["PING"]), owned(&[], false));
        for alone in ["QUIT", "auth", "HELLO"] {
            assert_eq!(keys_of(&[alone]), None, "{alone}");
        }
    }
}
