//! The passport file read back from disk (`Passport::from_file_contents`): never a panic, and a
//! passport that loads writes back a file that loads as the same identity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_core::Passport;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(passport) = Passport::from_file_contents(text) else { return };
    let again = Passport::from_file_contents(&passport.to_file_contents()).expect("a written passport loads");
    assert_eq!(again.agent_id(), passport.agent_id());
    assert_eq!(again.seed(), passport.seed());
});
