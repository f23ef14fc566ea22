//! Undoing `content-encoding` (gzip, deflate, br) on a buffered body.
//!
//! The body is already in memory (at most the layer's limit), so it is decoded with the plain
//! `Read` decoders of flate2 (miniz_oxide, pure Rust) and brotli-decompressor (pure Rust, the
//! decoder half of the `brotli` crate), capped at the same limit so a small compressed body
//! cannot inflate without bound. tower-http's decompression layers would decode *every* body as
//! a stream and change the body type of unselected routes too; here only a body a rule selects is
//! touched.

use std::io::Read;

use bytes::Bytes;
use http::{HeaderMap, header};

/// Why a body could not be decoded.
#[derive(Debug)]
pub(super) enum DecodeError {
    /// Decoded, it would exceed the limit.
    TooLarge,
    /// A coding this layer does not know (`zstd`, `compress`...).
    Unsupported(String),
    /// The bytes are not valid for their coding.
    Corrupt(String),
}

/// The body with every coding of `content-encoding` undone (the last applied first).
pub(super) fn decode(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, DecodeError> {
    let codings: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    let mut body = body;
    for coding in codings.iter().rev() {
        body = match coding.as_str() {
            "gzip" | "x-gzip" => read_capped(flate2::read::MultiGzDecoder::new(&body[..]), limit)?,
            // HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2); some servers send raw
            // deflate instead, which has no zlib header.
            "deflate" if has_zlib_header(&body) => {
                read_capped(flate2::read::ZlibDecoder::new(&body[..]), limit)?
            }
            "deflate" => read_capped(flate2::read::DeflateDecoder::new(&body[..]), limit)?,
            "br" => read_capped(
                brotli_decompressor::Decompressor::new(&body[..], 4096),
                limit,
            )?,
            other => return Err(DecodeError::Unsupported(other.to_owned())),
        };
    }
    Ok(body)
}

fn has_zlib_header(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

fn read_capped(reader: impl Read, limit: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;

    use http::HeaderValue;

    use super::*;

    /// `data` compressed with `coding` (gzip, deflate, deflate-raw, br).
    pub(in crate::body) fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
        let level = flate2::Compression::default();
        match coding {
            "gzip" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "deflate" => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "deflate-raw" => {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "br" => {
                let mut out = Vec::new();
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(data).unwrap();
                drop(e);
                out
            }
            other => panic!("no test encoder for {other}"),
        }
    }

    fn with_encoding(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn every_supported_coding_round_trips() {
        let data = br#"{"hello":"world"}"#;
        for (coding, header) in [
            ("gzip", "gzip"),
            ("deflate", "deflate"),
            ("deflate-raw", "deflate"),
            ("br", "br"),
        ] {
            let body = Bytes::from(encode(coding, data));
            let decoded = decode(&with_encoding(header), body, 1024).unwrap();
            assert_eq!(&decoded[..], data, "{coding}");
        }
    }

    #[test]
    fn stacked_codings_are_undone_last_first() {
        let body = encode("br", &encode("gzip", b"[1]"));
        let decoded = decode(&with_encoding("gzip, br"), body.into(), 1024).unwrap();
        assert_eq!(&decoded[..], b"[1]");
    }

    #[test]
    fn decoding_is_capped_at_the_limit() {
        let body = encode("gzip", &[b' '; 4096]);
        assert!(matches!(
            decode(&with_encoding("gzip"), body.into(), 4095),
            Err(DecodeError::TooLarge)
        ));
    }

    #[test]
    fn unknown_or_corrupt_codings_are_errors() {
        assert!(matches!(
            decode(&with_encoding("zstd"), Bytes::from_static(b"x"), 10),
            Err(DecodeError::Unsupported(c)) if c == "zstd"
        ));
        assert!(matches!(
            decode(&with_encoding("gzip"), Bytes::from_static(b"not gzip"), 10),
            Err(DecodeError::Corrupt(_))
        ));
        let plain = decode(&with_encoding("identity"), Bytes::from_static(b"x"), 10).unwrap();
        assert_eq!(&plain[..], b"x");
    }
}
