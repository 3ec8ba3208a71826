//! `chatmail dns`: the records a relay needs (computed by
//! `chatmail_dkim::zone` from the config and the DKIM key) printed as a zone
//! fragment. `chatmail doctor` compares the same records with the live DNS
//! (`doctor::dns`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};

use chatmail_config::Config;
use chatmail_dkim::zone::ZoneInput;

use crate::roots::Roots;

/// The DKIM TXT value of the relay's key, if the key can be read.
pub fn dkim_txt(config: &Config, roots: &Roots) -> Option<String> {
    let key = chatmail_dkim::load_key(&roots.host(&config.dkim_key_file)).ok()?;
    Some(chatmail_dkim::txt_record(&key))
}

/// The address this machine uses to reach the Internet, if it has a route
/// (no packet is sent: a UDP socket is only connected).
pub fn machine_address(v6: bool) -> Option<IpAddr> {
    let (bind, target) = match v6 {
        false => ("0.0.0.0:0", "192.0.2.1:53"),
        true => ("[::]:0", "[2001:db8::1]:53"),
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(target).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The zone fragment for the relay.
pub fn zone_fragment(
    config: &Config,
    roots: &Roots,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
) -> String {
    let txt = dkim_txt(config, roots);
    let input = ZoneInput {
        domain: &config.mail_domain,
        ipv4,
        ipv6,
        selector: &config.dkim_selector,
        dkim_txt: txt.as_deref(),
        mta_sts_id: "1",
    };
    chatmail_dkim::zone::fragment(&input)
}
