//! AFL++ entry point for [`chatmail_fuzz::config`].

fn main() {
    afl::fuzz!(|data: &[u8]| chatmail_fuzz::config(data));
}
