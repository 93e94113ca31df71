//! Replies read off a RESP2 connection: where one ends in the bytes received so far, and what
//! it says. Integers, bulk strings and simple strings are read here; anything else (arrays,
//! errors) is handed, as the exact bytes of the one reply, to redis-rs's parser, so it reads
//! and classifies them (`READONLY`, `NOPERM`, …) exactly as on its own connections.

use bytes::{Buf, BytesMut};
use redis::{RedisError, RedisResult, Value};

/// The length of the `\r\n`-terminated line at the start of `buf`, without the terminator.
fn line_len(buf: &[u8]) -> Option<usize> {
    let at = buf.iter().position(|&b| b == b'\n')?;
    (at > 0 && buf[at - 1] == b'\r').then_some(at - 1)
}

/// A line's number (`:42`, `$5`, `*3`, `$-1`).
fn number(line: &[u8]) -> RedisResult<i64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(line))
}

fn malformed(line: &[u8]) -> RedisError {
    let shown = String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned();
    RedisError::from((
        redis::ErrorKind::Parse,
        "malformed reply from the server",
        shown,
    ))
}

/// How deep arrays may nest in a reply; the bus's commands get flat replies, so deeper is
/// garbage (and would otherwise recurse without bound).
const MAX_DEPTH: usize = 8;

/// The longest bulk string a server sends: Redis's own limit on a string (512 MiB).
const MAX_BULK: usize = 512 * 1024 * 1024;

/// The length in bytes of the whole reply at the start of `buf`, or `None` when more bytes
/// must arrive first.
pub(crate) fn reply_len(buf: &[u8]) -> RedisResult<Option<usize>> {
    reply_len_within(buf, MAX_DEPTH)
}

fn reply_len_within(buf: &[u8], depth: usize) -> RedisResult<Option<usize>> {
    let Some(line) = line_len(buf) else {
        return Ok(None);
    };
    let head = line + 2;
    let Some((&kind, rest)) = buf[..line].split_first() else {
        return Err(malformed(&buf[..line]));
    };
    match kind {
        b'+' | b'-' | b':' => Ok(Some(head)),
        b'$' => match number(rest)? {
            n if n < 0 => Ok(Some(head)),
            n => bulk_len(buf, head, n),
        },
        b'*' if depth > 0 => {
            let mut at = head;
            for _ in 0..number(rest)?.max(0) {
                match reply_len_within(&buf[at..], depth - 1)? {
                    Some(n) => at += n,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        _ => Err(malformed(&buf[..line])),
    }
}

/// The length of a bulk string of `n` bytes whose header line is `head` bytes long, once its
/// bytes and their `\r\n` have arrived.
fn bulk_len(buf: &[u8], head: usize, n: i64) -> RedisResult<Option<usize>> {
    let Some(total) = usize::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_BULK)
        .map(|n| n + head + 2)
    else {
        return Err(malformed(&buf[..head - 2]));
    };
    if buf.len() < total {
        return Ok(None);
    }
    if &buf[total - 2..total] != b"\r\n" {
        return Err(malformed(&buf[..head - 2]));
    }
    Ok(Some(total))
}

/// Takes the first whole reply off `buf`: `None` when it has not fully arrived; `Some(Err)`
/// for an error reply (the connection stays usable) or, of kind
/// [`Parse`](redis::ErrorKind::Parse), for bytes that are no RESP reply (it does not).
pub(crate) fn take(buf: &mut BytesMut) -> Option<RedisResult<Value>> {
    let len = match reply_len(buf) {
        Ok(Some(len)) => len,
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    let reply = &buf[..len];
    let value = match reply[0] {
        b':' => number(&reply[1..len - 2]).map(Value::Int),
        b'$' if reply[1] != b'-' => {
            let start = line_len(reply).unwrap_or(0) + 2;
            Ok(Value::BulkString(reply[start..len - 2].to_vec()))
        }
        b'+' if &reply[1..len - 2] == b"OK" => Ok(Value::Okay),
        _ => redis::parse_redis_value(reply).and_then(Value::extract_error),
    };
    buf.advance(len);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Vec<RedisResult<Value>> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(reply) = take(&mut buf) {
            let malformed = matches!(&reply, Err(e) if e.kind() == redis::ErrorKind::Parse);
            out.push(reply);
            if malformed {
                break;
            }
        }
        out
    }

    #[test]
    fn reads_each_kind_of_reply_and_stops_at_a_partial_one() {
        let replies =
            all(b":3\r\n$5\r\nhello\r\n+OK\r\n+PONG\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n$9\r\npart");
        let values: Vec<Value> = replies.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(
            values,
            vec![
                Value::Int(3),
                Value::BulkString(b"hello".to_vec()),
                Value::Okay,
                Value::SimpleString("PONG".into()),
                Value::Nil,
                Value::Array(vec![Value::Int(1), Value::BulkString(b"x".to_vec())]),
            ]
        );
    }

    #[test]
    fn an_error_reply_is_redis_rs_s_error_with_its_code() {
        let mut replies = all(b"-READONLY You can't write against a read only replica.\r\n:1\r\n");
        assert_eq!(replies.len(), 2);
        let e = replies.remove(0).unwrap_err();
        assert_eq!(e.code(), Some("READONLY"));
        assert_eq!(replies.remove(0).unwrap(), Value::Int(1));
    }

    #[test]
    fn bytes_that_are_no_reply_are_a_parse_error() {
        let e = all(b"?what\r\n").remove(0).unwrap_err();
        assert_eq!(e.kind(), redis::ErrorKind::Parse);
        assert!(e.to_string().contains("?what"), "{e}");
        assert!(all(b":12x\r\n").remove(0).is_err());
    }

    #[test]
    fn a_bulk_string_without_its_terminator_or_of_absurd_length_is_a_parse_error() {
        for bytes in [&b"$5\r\nhelloXX:1\r\n"[..], b"$9223372036854775807\r\n"] {
            let e = all(bytes).remove(0).unwrap_err();
            assert_eq!(e.kind(), redis::ErrorKind::Parse, "{bytes:?}: {e}");
        }
    }

    #[test]
    fn arrays_nested_deeper_than_any_reply_of_the_bus_are_a_parse_error() {
        let deep = "*1\r\n".repeat(100_000) + ":1\r\n";
        let e = all(deep.as_bytes()).remove(0).unwrap_err();
        assert_eq!(e.kind(), redis::ErrorKind::Parse);
        let fine = "*1\r\n".repeat(3) + ":1\r\n";
        assert!(all(fine.as_bytes()).remove(0).is_ok());
    }

    #[test]
    fn a_reply_split_anywhere_is_read_once_whole() {
        let whole = b"*2\r\n$3\r\nabc\r\n:7\r\n";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert!(take(&mut buf).is_none(), "cut at {cut}");
            buf.extend_from_slice(&whole[cut..]);
            let value = take(&mut buf).unwrap().unwrap();
            assert_eq!(
                value,
                Value::Array(vec![Value::BulkString(b"abc".to_vec()), Value::Int(7)])
            );
            assert!(buf.is_empty());
        }
    }
}
