//! The `/new` CGI response.

use std::path::Path;

use chatmail_config::Config;
use chatmail_web::newemail_cgi;
use serde_json::Value;

fn body(response: &str) -> serde_json::Map<String, Value> {
    let json = response
        .strip_prefix("Content-Type: application/json\r\n\r\n")
        .unwrap_or_else(|| panic!("bad header: {response:?}"));
    assert!(json.ends_with('\n'));
    match serde_json::from_str(json).unwrap() {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn credentials_for_a_domain_with_a_real_certificate() {
    let config = Config::for_tests("chat.example.org", Path::new("/nonexistent"));
    let response = newemail_cgi(&config, false).unwrap();
    let map = body(&response);
    assert_eq!(map.keys().collect::<Vec<_>>(), ["email", "password"]);
    let email = map["email"].as_str().unwrap();
    let password = map["password"].as_str().unwrap();
    let (local, domain) = email.split_once('@').unwrap();
    assert_eq!(domain, "chat.example.org");
    assert_eq!(local.len(), config.username_max_length);
    assert!(local.len() >= config.username_min_length);
    assert!(
        local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert!(password.len() >= config.password_min_length);
    // Python's json.dumps spacing, key order as chatmaild.
    assert!(response.contains(&format!("{{\"email\": \"{email}\", \"password\": \"")));
    assert_ne!(
        body(&newemail_cgi(&config, false).unwrap())["email"],
        map["email"]
    );
}

#[test]
fn dclogin_url_for_self_signed_relays() {
    for (domain, self_signed, addr_domain) in [
        ("chat.example.org", true, "chat.example.org"),
        ("_chat.example.org", false, "_chat.example.org"),
        ("192.0.2.7", false, "[192.0.2.7]"),
    ] {
        let config = Config::for_tests(domain, Path::new("/nonexistent"));
        let map = body(&newemail_cgi(&config, self_signed).unwrap());
        let email = map["email"].as_str().unwrap();
        let password = map["password"].as_str().unwrap();
        assert!(email.ends_with(&format!("@{addr_domain}")), "{email}");
        let url = map["dclogin_url"].as_str().unwrap();
        let rest = url.strip_prefix("dclogin:").unwrap();
        let (addr, query) = rest.split_once('?').unwrap();
        assert_eq!(percent_decode(addr), email);
        let params: Vec<(&str, &str)> = query
            .split('&')
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        assert_eq!(params[0].0, "p");
        assert_eq!(percent_decode(params[0].1), password);
        assert_eq!(&params[1..], [("v", "1"), ("ic", "3"), ("sc", "3")]);
        assert!(
            !url.contains('@') && !url.contains('['),
            "address is encoded: {url}"
        );
    }
}
