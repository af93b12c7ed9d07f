//! Replies in RESP2, or RESP3 once a client said `HELLO 3`.

/// Where replies are written, in the protocol the client chose.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    pub out: Vec<u8>,
    pub resp3: bool,
}

impl Replies {
    pub(crate) fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    pub(crate) fn simple(&mut self, text: &str) {
        self.line(b'+', text);
    }

    /// An error; `text` starts with its code (`ERR`, `NOAUTH`, ...).
    pub(crate) fn error(&mut self, text: &str) {
        self.line(b'-', text);
    }

    pub(crate) fn integer(&mut self, n: i64) {
        self.out.push(b':');
        self.out.extend_from_slice(n.to_string().as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub(crate) fn bulk(&mut self, value: &[u8]) {
        self.out.push(b'$');
        self.out
            .extend_from_slice(value.len().to_string().as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
    }

    pub(crate) fn null(&mut self) {
        self.out
            .extend_from_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    }

    pub(crate) fn array(&mut self, len: usize) {
        self.out.push(b'*');
        self.out.extend_from_slice(len.to_string().as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// A map of `pairs` entries: a flat array of twice as many in RESP2.
    pub(crate) fn map(&mut self, pairs: usize) {
        if self.resp3 {
            self.out.push(b'%');
            self.out.extend_from_slice(pairs.to_string().as_bytes());
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.array(pairs * 2);
        }
    }

    /// A one-line reply: CR and LF in `text` would end it early, so they become spaces.
    fn line(&mut self, kind: u8, text: &str) {
        self.out.push(kind);
        self.out.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_in_both_protocols() {
        let mut two = Replies::default();
        two.ok();
        two.error("ERR no\r\nway");
        two.integer(-3);
        two.bulk(b"a\r\nb");
        two.null();
        two.map(1);
        assert_eq!(
            two.out,
            b"+OK\r\n-ERR no  way\r\n:-3\r\n$4\r\na\r\nb\r\n$-1\r\n*2\r\n"
        );
        let mut three = Replies {
            resp3: true,
            ..Replies::default()
        };
        three.null();
        three.map(2);
        assert_eq!(three.out, b"_\r\n%2\r\n");
    }
}
