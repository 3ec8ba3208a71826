//! AFL++ entry point for [`chatmail_fuzz::policy`].

fn main() {
    afl::fuzz!(|data: &[u8]| chatmail_fuzz::policy(data));
}
