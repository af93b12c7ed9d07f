//! The Redis front door (`resp_listen:`): Redis clients speak RESP2 or RESP3 to the proxy and
//! get the same data path as the HTTP API, through the connection loop the doors share
//! ([`crate::proxy::door`]).

mod commands;
mod parse;
mod reply;
mod touches;

use std::sync::Arc;

use bytes::BytesMut;

use self::commands::Session;
use self::parse::{Parsed, Parser};
use super::door::{Flow, Protocol, Touches};
use super::DataPath;

/// A Redis connection: its parser and its session.
#[derive(Debug)]
pub(crate) struct Resp {
    parser: Parser,
    session: Session,
}

impl Resp {
    pub(crate) fn start(path: Arc<DataPath>) -> Resp {
        let config = path.cluster.snapshot().config.clone();
        // A value, its key and the command around it; multi-key commands up to two values.
        let parser = Parser::new(parse::Limits {
            max_arg: config.max_value_bytes.max(config.max_key_bytes),
            max_total: config
                .max_value_bytes
                .saturating_mul(2)
                .saturating_add(64 * 1024),
        });
        Resp {
            parser,
            session: Session::new(path),
        }
    }
}

impl Protocol for Resp {
    type Command = Parsed;

    fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Parsed>, Vec<u8>> {
        self.parser.next(buf).map_err(|e| {
            let mut r = self.session.replies();
            r.error(&format!("ERR {e}"));
            r.out
        })
    }

    fn in_command(&self) -> bool {
        self.parser.in_command()
    }

    fn touches<'c>(&self, command: &'c Parsed) -> Touches<'c> {
        match command {
            Parsed::Command(args) => touches::touches(args),
            Parsed::Refused(_) => Touches::Connection,
        }
    }

    async fn run(&self, command: &Parsed) -> Vec<u8> {
        let mut r = self.session.replies();
        if let Parsed::Command(args) = command {
            self.session.run(args, &mut r).await;
        }
        r.out
    }

    fn run_alone(&mut self, command: &Parsed, out: &mut Vec<u8>) -> Flow {
        let mut r = self.session.replies();
        let flow = match command {
            Parsed::Command(args) => self.session.run_alone(args, &mut r),
            Parsed::Refused(why) => {
                r.error(&format!("ERR {why}"));
                Flow::Continue
            }
        };
        out.extend_from_slice(&r.out);
        flow
    }
}
