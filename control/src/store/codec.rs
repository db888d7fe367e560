//! Encoding of one history record: the key a change touched and what it did.
//!
//! ```text
//! byte 0      op: 0 = delete, 1 = put
//! bytes 1..5  key length, u32 little-endian
//! then        the key (UTF-8), then for a put the value, to the end
//! ```
//!
//! The layout is ours rather than one of the engine's composite types so that
//! the on-disk format of history is fixed by this file and the store's
//! format version alone, not by how a future engine release encodes
//! `Option` or tuples.

const OP_DELETE: u8 = 0;
const OP_PUT: u8 = 1;
const HEADER: usize = 5;

/// Writes the record of one change into `out` (cleared first).
pub(crate) fn encode(out: &mut Vec<u8>, key: &str, value: Option<&[u8]>) {
    out.clear();
    out.reserve(HEADER + key.len() + value.map_or(0, <[u8]>::len));
    out.push(if value.is_some() { OP_PUT } else { OP_DELETE });
    // Keys are limited to MAX_KEY_LEN, far below u32::MAX.
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    if let Some(value) = value {
        out.extend_from_slice(value);
    }
}

/// Reads a record written by [`encode`]; the error describes the damage.
pub(crate) fn decode(record: &[u8]) -> Result<(String, Option<Vec<u8>>), String> {
    if record.len() < HEADER {
        return Err(format!(
            "history record of {} bytes is too short",
            record.len()
        ));
    }
    let op = record[0];
    let key_len = u32::from_le_bytes([record[1], record[2], record[3], record[4]]) as usize;
    let rest = &record[HEADER..];
    if key_len > rest.len() {
        return Err(format!(
            "history record claims a {key_len}-byte key but holds {} bytes",
            rest.len()
        ));
    }
    let (key, value) = rest.split_at(key_len);
    let key = std::str::from_utf8(key)
        .map_err(|e| format!("history record key is not UTF-8: {e}"))?
        .to_owned();
    match op {
        OP_PUT => Ok((key, Some(value.to_vec()))),
        OP_DELETE if value.is_empty() => Ok((key, None)),
        OP_DELETE => Err(format!("history record deleting {key:?} carries a value")),
        other => Err(format!("history record has unknown op {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        for (key, value) in [
            ("a", Some(&b"xyz"[..])),
            ("routes/10.0.0.0/8", None),
            ("empty-value", Some(&b""[..])),
            ("ünïcode", Some(&[0u8, 255, 1][..])),
        ] {
            encode(&mut buf, key, value);
            let (k, v) = decode(&buf).unwrap();
            assert_eq!(k, key);
            assert_eq!(v.as_deref(), value);
        }
    }

    #[test]
    fn rejects_damage() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[1, 9, 0, 0, 0, b'a']).is_err());
        assert!(decode(&[7, 1, 0, 0, 0, b'a']).is_err());
        assert!(decode(&[0, 1, 0, 0, 0, b'a', b'x']).is_err());
        assert!(decode(&[1, 1, 0, 0, 0, 0xff]).is_err());
    }
}
