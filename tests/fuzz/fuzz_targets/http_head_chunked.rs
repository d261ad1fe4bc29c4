//! The head parser used as the server uses it: a byte stream arriving in chunks of fuzzed sizes, the
//! head parsed again from its start whenever a chunk brings a line end or passes the byte cap, then
//! the body skipped and the next (pipelined) request read. How TCP splits the bytes must not change
//! any answer: each decision must equal a one-shot parse of everything from that head on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime_smol::http::{parse_head, Head, HeadError, HEADER_BYTES_MAX};

/// Requests read from one stream before the target stops (a keep-alive connection's worth).
const REQUESTS_MAX: usize = 16;
/// Largest chunk one read hands over.
const CHUNK_BYTES_MAX: usize = 97;

/// Chunk sizes in 1..=CHUNK_BYTES_MAX, drawn from `seed` (a small LCG: the fuzzer steers the seed).
struct Chunks(u32);

impl Chunks {
    fn next_len(&mut self) -> usize {
        self.0 = self.0.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        1 + (self.0 >> 16) as usize % CHUNK_BYTES_MAX
    }
}

type Decision = Result<(Head, usize), HeadError>;

/// Reads one head from `stream` as the server does; `None` if the stream ends first.
fn read_incrementally(stream: &[u8], chunks: &mut Chunks) -> Option<Decision> {
    let mut have = 0;
    while have < stream.len() {
        let fresh_from = have;
        have = (have + chunks.next_len()).min(stream.len());
        let buf = &stream[..have];
        if buf[fresh_from..].contains(&b'\n') || buf.len() > HEADER_BYTES_MAX {
            match parse_head(buf) {
                Ok(Some(done)) => return Some(Ok(done)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&s0, rest)) = data.split_first() else { return };
    let Some((&s1, mut stream)) = rest.split_first() else { return };
    let mut chunks = Chunks(u32::from_le_bytes([s0, s1, 0x5a, 0xa5]));
    for _ in 0..REQUESTS_MAX {
        let Some(decision) = read_incrementally(stream, &mut chunks) else { return };
        assert_eq!(decision.clone().map(Some), parse_head(stream), "chunking changed the answer");
        let Ok((head, n)) = decision else { return };
        let body = usize::try_from(head.content_length).unwrap_or(usize::MAX);
        stream = stream.get(n.saturating_add(body)..).unwrap_or_default();
    }
});
