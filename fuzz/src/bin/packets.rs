//! AFL++ entry point for [`chatmail_fuzz::packets`].

fn main() {
    afl::fuzz!(|data: &[u8]| chatmail_fuzz::packets(data));
}
