//! The peer server's HTTP/1.1 request head parser (`runtime_smol::http::parse_head`) on arbitrary
//! bytes: it must never panic, and what it accepts must obey the rules it documents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime_smol::http::{error_response, parse_head, HEADER_BYTES_MAX, TARGET_BYTES_MAX};

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Ok(Some((head, n))) => {
            assert!(n <= data.len().min(HEADER_BYTES_MAX), "head length {n} past the input or the cap");
            assert!(data[..n].ends_with(b"\n"), "a complete head ends with its blank line");
            assert!(head.method.bytes().all(|b| b.is_ascii_uppercase()) && !head.method.is_empty());
            assert!(head.path.starts_with('/') && head.path.len() <= TARGET_BYTES_MAX);
            assert!(!head.path.contains(['?', '#']), "the query and fragment are cut off the path");
            // The head is its own bytes: parsing exactly them gives the same answer.
            assert_eq!(parse_head(&data[..n]), Ok(Some((head, n))));
        }
        // Waiting for more is only allowed below the byte cap.
        Ok(None) => assert!(data.len() <= HEADER_BYTES_MAX, "{} bytes still waiting", data.len()),
        Err(e) => {
            assert!(matches!(e.status(), 400 | 431 | 501 | 505), "unexpected status {}", e.status());
            // The refusal sent back is itself a well-formed response with a JSON object body.
            let response = error_response(e.status(), &e.to_string(), true);
            let body_at = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
            darkmatter_fuzz::check_reply_body(e.status(), &response[body_at..]);
        }
    }
});
