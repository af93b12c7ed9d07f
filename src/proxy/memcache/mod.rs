//! The memcached front door (`memcache_listen:`): memcached clients speak the text protocol
//! to the proxy and get the same data path as the HTTP API, through the connection loop the
//! doors share ([`crate::proxy::door`]). A value's flags are stored in front of it when they
//! are not 0 (see [`commands::FLAGS_MAGIC`]).

mod commands;
mod parse;

use std::future::Future;
use std::sync::Arc;

use bytes::BytesMut;

use self::commands::Session;
use self::parse::{Command, Parser};
use super::door::{Flow, Protocol, Touches};
use super::DataPath;

/// A memcached connection: its parser and its session.
#[derive(Debug)]
pub(crate) struct Memcache {
    parser: Parser,
    session: Session,
}

impl Memcache {
    pub(crate) fn start(path: Arc<DataPath>) -> Memcache {
        let config = path.cluster.snapshot().config.clone();
        Memcache {
            parser: Parser::new(parse::Limits {
                max_key: config.max_key_bytes,
                max_value: config.max_value_bytes,
            }),
            session: Session::new(path),
        }
    }
}

impl Protocol for Memcache {
    type Command = Command;

    fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, Vec<u8>> {
        self.parser
            .next(buf)
            .map_err(|e| format!("{e}\r\n").into_bytes())
    }

    fn in_command(&self) -> bool {
        self.parser.in_command()
    }

    fn touches<'c>(&self, command: &'c Command) -> Touches<'c> {
        let keys = |keys: Vec<&'c [u8]>, writes| Touches::Keys { keys, writes };
        match command {
            _ if self.session.must_authenticate() => Touches::Connection,
            Command::Get { keys: k, .. } => keys(k.iter().map(|k| &k[..]).collect(), false),
            Command::Store { key, .. }
            | Command::Delete { key, .. }
            | Command::Touch { key, .. } => keys(vec![&key[..]], true),
            Command::Version | Command::Refused(_) | Command::Dropped(_) => keys(Vec::new(), false),
            Command::Quit => Touches::Connection,
        }
    }

    fn run<'a>(&'a self, command: &'a Command) -> impl Future<Output = Vec<u8>> + Send + 'a {
        self.session.run(command)
    }

    fn run_alone(&mut self, command: &Command, out: &mut Vec<u8>) -> Flow {
        match command {
            Command::Quit => Flow::Close,
            _ => {
                self.session.authenticate(command, out);
                Flow::Continue
            }
        }
    }
}
