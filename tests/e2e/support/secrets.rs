//! Proof that a secret never reaches the output, in any form a reader
//! could turn back into it.

use std::process::Output;

use base64::Engine;

use super::{stderr, stdout};

/// Asserts that none of `secrets` is in the doctor's stdout or stderr, as
/// it is or encoded (see [`assert_secret_absent`]).
#[track_caller]
pub fn assert_no_secret(o: &Output, secrets: &[&str]) {
    for secret in secrets {
        assert_secret_absent(&stdout(o), secret);
        assert_secret_absent(&stderr(o), secret);
    }
}

/// Decoders that take any run of base64: a slice out of a longer encoding
/// has no padding and may end in stray bits.
fn lenient_base64() -> [base64::engine::GeneralPurpose; 2] {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    [
        GeneralPurpose::new(&base64::alphabet::STANDARD, config),
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, config),
    ]
}

/// Every way a reader could find `secret` in `text`: as it is, and decoded
/// from every run of base64 (any alignment, standard or URL-safe) or of
/// percent-encoding, across line breaks.
#[track_caller]
pub fn assert_secret_absent(text: &str, secret: &str) {
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(
        !squeezed.contains(secret),
        "the secret {secret:?} is shown in:\n{text}"
    );
    let bytes = squeezed.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                decoded.push(b);
                i += 3;
            }
            (b'+', _) => {
                decoded.push(b' ');
                i += 1;
            }
            (c, _) => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    assert!(
        !String::from_utf8_lossy(&decoded).contains(secret),
        "the secret {secret:?} is shown percent-encoded in:\n{text}"
    );
    for run in squeezed.split(|c: char| !(c.is_ascii_alphanumeric() || "+/-_".contains(c))) {
        for skip in 0..4 {
            let run = run.get(skip..).unwrap_or("");
            let run = &run[..run.len() - usize::from(run.len() % 4 == 1)];
            for engine in &lenient_base64() {
                if let Ok(d) = engine.decode(run) {
                    assert!(
                        !String::from_utf8_lossy(&d).contains(secret),
                        "the secret {secret:?} is shown base64-encoded in:\n{text}"
                    );
                }
            }
        }
    }
}
