//! Decodes arbitrary bytes (study §9.4, WIRE-1). The decoder must never panic; whatever it
//! accepts must round-trip, and because the encoding is canonical, re-encoding must give
//! back exactly the input bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use totem_core::wire::{decode, decode_bytes, encode, encoded_len};

fuzz_target!(|data: &[u8]| {
    let shared = Bytes::copy_from_slice(data);
    let Ok((sender, msg)) = decode(data) else {
        assert!(decode_bytes(&shared).is_err(), "decode and decode_bytes disagree");
        return;
    };
    assert_eq!(decode_bytes(&shared), Ok((sender, msg.clone())));
    let mut buf = Vec::new();
    encode(sender, &msg, &mut buf);
    assert_eq!(buf.len(), encoded_len(&msg));
    assert_eq!(buf, data, "accepted a non-canonical encoding");
    assert_eq!(decode(&buf), Ok((sender, msg)));
});
