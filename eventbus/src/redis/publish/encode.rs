//! The one encoder of the commands the publish path sends: `PUBLISH`, `SPUBLISH` and `XADD`.
//!
//! A [`Command`] names its words once; [`Command::write_resp`] writes them in RESP for the
//! publish lane, and [`Command::to_cmd`] hands the same words to redis-rs where its connection
//! carries them (over TLS and on a cluster, where the connection needs a `Cmd` to route).

use redis::Cmd;

use crate::redis::streams::reply::ENVELOPE_FIELD;

/// A command of the publish path.
#[derive(Clone, Copy)]
pub(crate) enum Command<'a> {
    /// `PUBLISH channel payload`, or `SPUBLISH` when `sharded`.
    Publish {
        sharded: bool,
        channel: &'a str,
        payload: &'a [u8],
    },
    /// `XADD stream <trim> * envelope payload`.
    Append {
        stream: &'a str,
        trim: &'a [String],
        payload: &'a [u8],
    },
}

impl<'a> Command<'a> {
    /// The key the command writes to: the channel or the stream.
    pub(crate) fn key(&self) -> &'a str {
        match self {
            Command::Publish { channel, .. } => channel,
            Command::Append { stream, .. } => stream,
        }
    }

    /// Calls `word` on each of the command's words, the verb first; returns how many.
    fn words(&self, mut word: impl FnMut(&[u8])) -> usize {
        match *self {
            Command::Publish {
                sharded,
                channel,
                payload,
            } => {
                word(if sharded { b"SPUBLISH" } else { b"PUBLISH" });
                word(channel.as_bytes());
                word(payload);
                3
            }
            Command::Append {
                stream,
                trim,
                payload,
            } => {
                word(b"XADD");
                word(stream.as_bytes());
                trim.iter().for_each(|t| word(t.as_bytes()));
                word(b"*");
                word(ENVELOPE_FIELD.as_bytes());
                word(payload);
                5 + trim.len()
            }
        }
    }

    /// About how many bytes [`write_resp`](Self::write_resp) writes (never fewer).
    pub(crate) fn resp_len(&self) -> usize {
        let mut len = 16;
        let count = self.words(|w| len += w.len() + 16);
        len + count
    }

    /// Appends the command to `out` in RESP: `*<words>` and a bulk string per word.
    pub(crate) fn write_resp(&self, out: &mut Vec<u8>) {
        let mut count = 0;
        self.words(|_| count += 1);
        out.reserve(self.resp_len());
        header(out, b'*', count);
        self.words(|w| {
            header(out, b'$', w.len());
            out.extend_from_slice(w);
            out.extend_from_slice(b"\r\n");
        });
    }

    /// The same command for a redis-rs connection.
    pub(crate) fn to_cmd(self) -> Cmd {
        let mut cmd = Cmd::with_capacity(8, self.resp_len());
        self.words(|w| {
            cmd.arg(w);
        });
        cmd
    }
}

/// `<kind><n>\r\n`, the decimal digits written by hand (`write!` costs more than the command).
fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(kind);
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commands in RESP, one after another, as the lane writes them.
    fn resp_of(cmds: &[Command<'_>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(cmds.iter().map(Command::resp_len).sum());
        cmds.iter().for_each(|c| c.write_resp(&mut out));
        out
    }

    fn commands(trim: &[String]) -> Vec<Command<'_>> {
        vec![
            Command::Publish {
                sharded: false,
                channel: "events:a",
                payload: b"{\"x\":1}",
            },
            Command::Publish {
                sharded: true,
                channel: "",
                payload: &[0u8, 13, 10, 255],
            },
            Command::Append {
                stream: "events:b",
                trim,
                payload: &[b'y'; 1234],
            },
        ]
    }

    /// The agreement test: our RESP is byte for byte redis-rs's packing of the same words.
    #[test]
    fn resp_is_what_redis_rs_packs() {
        for trim in [
            vec![],
            vec!["MAXLEN".to_owned(), "~".to_owned(), "1000000".to_owned()],
        ] {
            for cmd in commands(&trim) {
                let mut ours = Vec::new();
                cmd.write_resp(&mut ours);
                assert_eq!(ours, cmd.to_cmd().get_packed_command());
                assert!(ours.len() <= cmd.resp_len());
            }
            let all = commands(&trim);
            let packed: Vec<u8> = all
                .iter()
                .flat_map(|c| c.to_cmd().get_packed_command())
                .collect();
            assert_eq!(resp_of(&all), packed);
        }
    }

    #[test]
    fn headers_of_every_width() {
        for n in [0usize, 9, 10, 99, 100, 12345, usize::MAX] {
            let mut out = Vec::new();
            header(&mut out, b'$', n);
            assert_eq!(out, format!("${n}\r\n").into_bytes());
        }
    }
}
