//! AFL++ entry point for [`chatmail_fuzz::armor`].

fn main() {
    afl::fuzz!(|data: &[u8]| chatmail_fuzz::armor(data));
}
