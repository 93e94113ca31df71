//! The envelope `publish` sends: made with [`Envelope::untyped`] and encoded by the bus's own
//! envelope code, so the bytes are those a Rust service's `publish` writes.

use eventbus::Envelope;
use serde_json::value::RawValue;

use crate::exit::CliError;

/// What goes into an envelope besides a fresh id and the current time.
#[derive(Debug)]
pub(crate) struct Draft {
    /// The event type.
    pub(crate) event_type: String,
    /// The data, JSON as given.
    pub(crate) data: String,
    /// The `source` attribute.
    pub(crate) source: String,
    /// The `correlationid` attribute, when given.
    pub(crate) correlation_id: Option<String>,
    /// The `dataversion` attribute.
    pub(crate) data_version: u32,
}

/// An encoded envelope and its id.
#[derive(Debug)]
pub(crate) struct Encoded {
    /// The envelope's id (a UUID v7).
    pub(crate) id: String,
    /// The CloudEvents JSON.
    pub(crate) bytes: Vec<u8>,
}

impl Draft {
    /// Encodes the envelope with a new UUID v7 id and the current time.
    pub(crate) fn encode(&self) -> Result<Encoded, CliError> {
        encode(self.envelope()?)
    }

    /// The envelope, with a new UUID v7 id and the current time.
    fn envelope(&self) -> Result<Envelope<Box<RawValue>>, CliError> {
        // The data goes out as given (without whitespace), not re-serialized: numbers and key
        // order stay the user's.
        let data = RawValue::from_string(minify(&self.data))
            .map_err(|e| CliError::usage(format!("the event data is not valid JSON: {e}")))?;
        let envelope = Envelope::untyped(&*self.event_type, self.data_version, data)
            .map_err(|e| CliError::usage(format!("invalid event type: {e}")))?
            .with_source(&*self.source);
        Ok(match &self.correlation_id {
            Some(c) => envelope.with_correlation_id(c.clone()),
            None => envelope,
        })
    }
}

fn encode(envelope: Envelope<Box<RawValue>>) -> Result<Encoded, CliError> {
    let bytes = envelope
        .encode_untyped()
        .map_err(|e| CliError::usage(e.to_string()))?;
    Ok(Encoded {
        id: envelope.id().to_owned(),
        bytes,
    })
}

/// JSON without the whitespace between tokens, as serde writes it (strings untouched).
fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use eventbus::Event;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct UserCreated {
        user_id: u64,
        name: String,
    }

    impl Event for UserCreated {
        const TYPE: &'static str = "user_created";
        const CHANNEL: &'static str = "events:user_created";
    }

    #[test]
    fn the_bytes_are_those_of_a_rust_publish() {
        let time = Utc::now();
        let draft = Draft {
            event_type: "user_created".into(),
            data: "{ \"user_id\": 1,\n \"name\": \"A d\\\"a\" }".into(),
            source: "accounts".into(),
            correlation_id: Some("c-1".into()),
            data_version: 1,
        };
        let envelope = draft.envelope().unwrap();
        let ours = encode(
            envelope
                .with_id("0193a5c4-8f2e-7d3a-9b1c-2f4e6a8b0c1d")
                .with_time(time),
        )
        .unwrap();
        let rust = Envelope::new(UserCreated {
            user_id: 1,
            name: "A d\"a".into(),
        })
        .with_id("0193a5c4-8f2e-7d3a-9b1c-2f4e6a8b0c1d")
        .with_time(time)
        .with_source("accounts")
        .with_correlation_id("c-1")
        .encode()
        .unwrap();
        assert_eq!(
            String::from_utf8(ours.bytes).unwrap(),
            String::from_utf8(rust).unwrap()
        );
    }

    #[test]
    fn invalid_data_is_a_usage_error() {
        let draft = Draft {
            event_type: "t".into(),
            data: "{not json".into(),
            source: "s".into(),
            correlation_id: None,
            data_version: 1,
        };
        let err = draft.encode().unwrap_err();
        assert_eq!(err.code, crate::exit::Code::Usage);
        assert!(
            err.to_string()
                .starts_with("the event data is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_or_spaced_type_is_a_usage_error() {
        for event_type in ["", "user created"] {
            let draft = Draft {
                event_type: event_type.into(),
                data: "{}".into(),
                source: "s".into(),
                correlation_id: None,
                data_version: 1,
            };
            let err = draft.encode().unwrap_err();
            assert_eq!(err.code, crate::exit::Code::Usage);
            assert!(err.to_string().starts_with("invalid event type"), "{err}");
        }
    }
}
