//! AFL++ entry point for [`chatmail_fuzz::metadata`].

fn main() {
    afl::fuzz!(|data: &[u8]| chatmail_fuzz::metadata(data));
}
