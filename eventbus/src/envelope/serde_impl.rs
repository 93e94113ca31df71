//! The wire contract through serde: `Serialize` and `Deserialize` for [`Envelope`] and
//! [`RawEnvelope`].

use super::*;

/// The wire contract, through any serde serializer. With serde_json the output is byte for byte
/// what [`encode_untyped`](Envelope::encode_untyped) writes: the `type` and `dataversion` the
/// envelope holds, which for every envelope made by [`Envelope::new`] (or decoded from a
/// message of `E`'s version) are `E::TYPE` and `E::VERSION`, so the output is also what
/// [`encode`](Envelope::encode) writes. It fails where `encode` fails, with the
/// [`EncodeError`]'s message.
impl<E: Serialize> Serialize for Envelope<E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encode::serialize(
            serializer,
            &self.attributes(),
            &self.data,
            &self.event_type,
            self.dataversion.as_deref().map(encode::Version::Text),
        )
    }
}

/// Reads what [`Envelope::decode`] reads, with the same tolerance, from serde_json's
/// deserializers (`serde_json::from_str`, `from_slice`, `from_reader`, `from_value`). The
/// `type` is not checked, since `E` need not be an [`Event`]; the content type is, unless `E` is
/// `serde_json::Value`. Errors carry the [`DecodeError`]'s message.
impl<'de, E: DeserializeOwned + 'static> Deserialize<'de> for Envelope<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawEnvelope::deserialize(deserializer)?
            .into_envelope()
            .map_err(serde::de::Error::custom)
    }
}

/// As [`RawEnvelope::encode`]: `data` is written as it came.
impl Serialize for RawEnvelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encode::serialize(
            serializer,
            &self.header.attributes(),
            &*self.data,
            &self.header.event_type,
            self.header
                .dataversion
                .as_deref()
                .map(encode::Version::Text),
        )
    }
}

/// As [`RawEnvelope::parse`], from serde_json's deserializers.
impl<'de> Deserialize<'de> for RawEnvelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        decode::read(deserializer)?.map_err(serde::de::Error::custom)
    }
}
