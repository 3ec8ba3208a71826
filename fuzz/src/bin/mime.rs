//! AFL++ entry point for [`chatmail_fuzz::mime`].

fn main() {
    afl::fuzz!(|data: &[u8]| chatmail_fuzz::mime(data));
}
