//! AFL++ entry point for [`chatmail_fuzz::dict`].

fn main() {
    afl::fuzz!(|data: &[u8]| chatmail_fuzz::dict(data));
}
