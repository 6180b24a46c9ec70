//! How an event's JSON is stored: compressed, and re-read for the API on demand.
//!
//! Writing the payload is the biggest single cost of ingestion (performance notes), so it is
//! stored compressed. Most SDKs (Python always, Node above 32 KiB) already send a compressed
//! envelope holding just the event: then the request body is kept exactly as it arrived
//! (`<encoding>+envelope`), which costs no CPU at all and is smaller than anything we could
//! afford to produce per event. Anything else is the event JSON compressed with zstd level 1.
//! Reading decodes, and for envelopes re-parses and takes the event item.

use crate::protocol::compression::{self, Encoding};
use crate::protocol::envelope::{self, ItemType};

/// Decompressed payloads are capped on the way back out too.
const MAX_DECODED: usize = 100 * 1024 * 1024;

/// A compressed body kept as-is only while it is this small: past it, attachments or other
/// items ride along and re-compressing the event alone is cheaper to store.
pub const MAX_RAW_BODY: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPayload {
    pub codec: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("stored payload has an unknown codec '{0}'")]
    UnknownCodec(String),
    #[error("stored payload cannot be decoded: {0}")]
    Corrupt(String),
}

impl StoredPayload {
    /// The event JSON compressed on its own.
    pub fn compress(event_json: &[u8]) -> StoredPayload {
        let mut bytes = zstd::bulk::compress(event_json, 1).unwrap_or_else(|_| event_json.to_vec());
        // The output buffer is sized for the worst case (the input plus a little); the row
        // waits in memory for its commit, so it keeps only what it uses.
        bytes.shrink_to_fit();
        StoredPayload {
            codec: "zstd".into(),
            bytes,
        }
    }

    /// The request body as it arrived, when it is one compressed envelope.
    pub fn raw_envelope(encoding: Encoding, body: Vec<u8>) -> StoredPayload {
        StoredPayload {
            codec: format!("{}+envelope", encoding.as_str()),
            bytes: body,
        }
    }

    /// The event JSON this payload holds.
    pub fn event_json(&self) -> Result<Vec<u8>, PayloadError> {
        match self.codec.as_str() {
            "zstd" => zstd::bulk::decompress(&self.bytes, MAX_DECODED)
                .map_err(|e| PayloadError::Corrupt(e.to_string())),
            codec => {
                let Some(name) = codec.strip_suffix("+envelope") else {
                    return Err(PayloadError::UnknownCodec(codec.into()));
                };
                // The codec names are Content-Encoding tokens, so the same parser reads them.
                let encodings = compression::parse_content_encoding(Some(name.as_bytes()))
                    .map_err(|_| PayloadError::UnknownCodec(codec.into()))?;
                let body = compression::decode(&self.bytes, &encodings, MAX_DECODED)
                    .map_err(|e| PayloadError::Corrupt(e.to_string()))?;
                let env =
                    envelope::parse(&body).map_err(|e| PayloadError::Corrupt(e.to_string()))?;
                env.items
                    .iter()
                    .find(|item| item.ty == ItemType::Event)
                    .map(|item| item.payload.to_vec())
                    .ok_or_else(|| PayloadError::Corrupt("envelope without an event".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn zstd_round_trip() {
        let json = br#"{"message":"hello"}"#;
        let p = StoredPayload::compress(json);
        assert_eq!(p.event_json().unwrap(), json);
    }

    #[test]
    fn raw_gzip_envelope_round_trip() {
        let env = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"event\",\"length\":19}\n{\"message\":\"hello\"}\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(env).unwrap();
        let p = StoredPayload::raw_envelope(Encoding::Gzip, gz.finish().unwrap());
        assert_eq!(p.codec, "gzip+envelope");
        assert_eq!(p.event_json().unwrap(), br#"{"message":"hello"}"#);
    }

    #[test]
    fn unknown_codec_is_an_error() {
        let p = StoredPayload {
            codec: "lz77".into(),
            bytes: vec![],
        };
        assert!(matches!(p.event_json(), Err(PayloadError::UnknownCodec(_))));
    }
}
