use super::*;

const LIMITS: Limits = Limits {
    max_key: 16,
    max_value: 32,
};

/// Every command in `input`, fed in pieces of `step` bytes.
fn parse_in_steps(input: &[u8], step: usize) -> Result<Vec<Command>, LineTooLong> {
    let mut parser = Parser::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(command) = parser.next(&mut buf)? {
            commands.push(command);
        }
    }
    Ok(commands)
}

fn parse(input: &[u8]) -> Vec<Command> {
    parse_in_steps(input, input.len()).unwrap()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn the_commands_of_the_protocol() {
    let commands = parse(
        b"get a b\r\ngets c\r\nset k 5 0 3\r\nv\r\n\r\nadd k 0 -1 0 noreply\r\n\r\n\
          replace k 4294967295 100 1\r\nx\r\ndelete k\r\ndelete k 0 noreply\r\n\
          touch k 10\r\nversion\r\nquit\r\n",
    );
    let store = |mode, flags, exptime, data: &str, noreply| Command::Store {
        mode,
        key: b("k"),
        flags,
        exptime,
        data: b(data),
        noreply,
    };
    assert_eq!(
        commands,
        vec![
            Command::Get {
                keys: vec![b("a"), b("b")],
                cas: false
            },
            Command::Get {
                keys: vec![b("c")],
                cas: true
            },
            // The data block is bytes, CRLF and all.
            store(Store::Set, 5, 0, "v\r\n", false),
            store(Store::Add, 0, -1, "", true),
            store(Store::Replace, u32::MAX, 100, "x", false),
            Command::Delete {
                key: b("k"),
                noreply: false
            },
            Command::Delete {
                key: b("k"),
                noreply: true
            },
            Command::Touch {
                key: b("k"),
                exptime: 10,
                noreply: false
            },
            Command::Version,
            Command::Quit,
        ]
    );
}

#[test]
fn bad_lines_are_answered_and_the_next_command_is_found() {
    let refused = |line: &str| Command::Refused(line.to_owned());
    let commands = parse(
        b"incr k 1\r\nget\r\nset k x 0 1\r\nset k 0 0 40\r\n0123456789012345678901234567890123456789\r\n\
          get a-key-longer-than-16\r\nset k 0 0 2\r\nabc\r\ndelete k 5\r\ntouch k soon\r\nget k\n",
    );
    assert_eq!(
        commands,
        vec![
            refused("ERROR"),
            refused("ERROR"),
            refused("CLIENT_ERROR bad command line format"),
            refused("SERVER_ERROR object too large for cache"),
            refused("CLIENT_ERROR key is 20 bytes; the limit is 16"),
            refused("CLIENT_ERROR bad data chunk"),
            // What followed the short block: an empty line.
            refused("ERROR"),
            refused("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"),
            refused("CLIENT_ERROR invalid exptime argument"),
            Command::Get {
                keys: vec![b("k")],
                cas: false
            },
        ]
    );
}

#[test]
fn noreply_comes_after_the_key_and_silences_refusals_too() {
    let commands = parse(
        b"delete noreply\r\nset k 0 0 40 noreply\r\n0123456789012345678901234567890123456789\r\n\
          set f 1 0 30 noreply\r\n012345678901234567890123456789\r\n\r\n",
    );
    let dropped = || Command::Dropped("SERVER_ERROR object too large for cache".into());
    assert_eq!(
        commands,
        vec![
            Command::Delete {
                key: b("noreply"),
                noreply: false
            },
            dropped(),
            // 30 bytes fit the limit of 32, but not with the 8 bytes of flags in front.
            dropped(),
            Command::Refused("ERROR".into()),
        ]
    );
}

#[test]
fn a_line_too_long_ends_the_connection_without_buffering_it() {
    let mut parser = Parser::new(LIMITS);
    let mut buf = BytesMut::from(&vec![b'a'; MAX_LINE + 1][..]);
    assert_eq!(parser.next(&mut buf), Err(LineTooLong));
}

#[test]
fn a_value_over_the_limit_goes_past_without_being_kept() {
    let mut parser = Parser::new(LIMITS);
    let mut buf = BytesMut::from(&b"set k 0 0 1000000\r\n"[..]);
    assert_eq!(parser.next(&mut buf), Ok(None));
    for _ in 0..100 {
        buf.extend_from_slice(&[b'x'; 10_000]);
        assert_eq!(parser.next(&mut buf), Ok(None));
        assert!(buf.is_empty());
        assert!(parser.in_command());
    }
    buf.extend_from_slice(b"\r\nversion\r\n");
    assert_eq!(
        parser.next(&mut buf),
        Ok(Some(Command::Refused(
            "SERVER_ERROR object too large for cache".into()
        )))
    );
    assert_eq!(parser.next(&mut buf), Ok(Some(Command::Version)));
    assert!(!parser.in_command());
}

proptest::proptest! {
    #[test]
    fn any_bytes_give_commands_within_limits_or_an_error(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        step in 1usize..64,
    ) {
        if let Ok(commands) = parse_in_steps(&bytes, step) {
            for command in commands {
                match command {
                    Command::Get { keys, .. } => {
                        proptest::prop_assert!(keys.iter().all(|k| k.len() <= LIMITS.max_key));
                    }
                    Command::Store { key, data, .. } => {
                        proptest::prop_assert!(key.len() <= LIMITS.max_key);
                        proptest::prop_assert!(data.len() <= LIMITS.max_value);
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn any_split_of_valid_commands_parses_the_same(
        values in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..8),
        step in 1usize..32,
    ) {
        let mut input = Vec::new();
        for (i, value) in values.iter().enumerate() {
            input.extend_from_slice(format!("set k{i} {i} 0 {}\r\n", value.len()).as_bytes());
            input.extend_from_slice(value);
            input.extend_from_slice(b"\r\nget k1 k2\r\n");
        }
        proptest::prop_assert_eq!(parse_in_steps(&input, step).unwrap(), parse(&input));
    }
}
