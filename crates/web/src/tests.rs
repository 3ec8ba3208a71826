use chatmail_config::Config;

use chatmail_snippets::nginx::{DCACCOUNT_REDIRECT, NGINX_TEMPLATE, NginxSite, nginx_conf};

use super::*;

fn config(extra: &str) -> Config {
    Config::parse(&format!(
        "[params]\nmail_domain = chat.example.org\n{extra}"
    ))
    .unwrap()
    .0
}

fn file<'a>(files: &'a [WebFile], path: &str) -> &'a str {
    &files.iter().find(|f| f.path == path).unwrap().text
}

#[test]
fn invite_names_the_new_endpoint() {
    let c = config("");
    assert_eq!(
        Site::relay(&c).invite(),
        "DCACCOUNT:https://chat.example.org/new"
    );
    let sandbox = Site {
        web_base: "https://chat.localhost:8443".into(),
        ..Site::relay(&c)
    };
    assert_eq!(
        sandbox.invite(),
        "DCACCOUNT:https://chat.localhost:8443/new"
    );
}

#[test]
fn home_page_has_link_qr_code_and_limits() {
    let c = config("max_message_size = 10485760\nmax_mailbox_size = 2G\ndelete_mails_after = 5\n");
    let files = render(&c, &Site::relay(&c));
    let index = file(&files, "index.html");
    assert_eq!(
        index
            .matches("href=\"DCACCOUNT:https://chat.example.org/new\"")
            .count(),
        2,
        "button and QR code link"
    );
    assert!(index.contains("<svg class=\"qr\""));
    assert!(index.contains("up to 10 MiB large"));
    assert!(index.contains("up to 2 GiB on the relay"));
    assert!(index.contains("5 days after it arrived"));
    assert!(index.contains("not used for 90 days"));
    assert!(index.contains("name=\"viewport\""));
    for page in ["index.html", "info.html", "privacy.html"] {
        let text = file(&files, page);
        assert!(!text.contains("<script"), "{page}");
        assert!(!text.contains("src="), "{page} loads nothing external");
        assert!(text.starts_with("<!DOCTYPE html>"));
    }
}

#[test]
fn qr_code_is_the_code_of_the_text() {
    let text = "DCACCOUNT:https://chat.example.org/new";
    let svg = qr_svg(text, "x").unwrap();
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).unwrap();
    let w = code.width();
    assert!(svg.contains(&format!("viewBox=\"0 0 {s} {s}\"", s = w + 8)));
    // Read the modules back from the path and compare with the encoder's.
    let d = svg
        .split(" d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mut dark = vec![false; w * w];
    for m in d.split('M').filter(|m| !m.is_empty()) {
        let xy: Vec<usize> = m
            .trim_end_matches("h1v1h-1z")
            .split(' ')
            .map(|n| n.parse().unwrap())
            .collect();
        dark[(xy[1] - 4) * w + xy[0] - 4] = true;
    }
    let expected: Vec<bool> = code
        .to_colors()
        .iter()
        .map(|c| *c == qrcode::Color::Dark)
        .collect();
    assert_eq!(dark, expected);
}

#[test]
fn privacy_page_escapes_the_operators_text() {
    let c = config(
        "privacy_postal = Example e.V. <script>\nprivacy_mail = privacy@example.org\n\
         privacy_supervisor = Landesbeauftragte & Co\n",
    );
    let files = render(&c, &Site::relay(&c));
    let privacy = file(&files, "privacy.html");
    assert!(privacy.contains("<pre>Example e.V. &lt;script&gt;</pre>"));
    assert!(privacy.contains("<a href=\"mailto:privacy@example.org\">privacy@example.org</a>"));
    assert!(privacy.contains("<pre>Landesbeauftragte &amp; Co</pre>"));
    assert!(!privacy.contains("<script>"));
    let bare = config("");
    let privacy = file(&render(&bare, &Site::relay(&bare)), "privacy.html").to_owned();
    assert!(privacy.contains("has not published a postal address"));
    assert!(file(&files, "info.html").contains("mailto:privacy@example.org"));
}

#[test]
fn autoconfig_and_mta_sts() {
    let c = config("");
    let site = Site {
        mail_host: "127.0.0.1".into(),
        imaps_port: 10993,
        ..Site::relay(&c)
    };
    let xml = autoconfig(&c, &site);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig"));
    assert!(xml.contains("<domain>chat.example.org</domain>"));
    assert!(xml.contains(
        "<incomingServer type=\"imap\">\n      <hostname>127.0.0.1</hostname>\n      \
         <port>10993</port>\n      <socketType>SSL</socketType>"
    ));
    assert!(xml.contains("<port>587</port>\n      <socketType>STARTTLS</socketType>"));
    assert_eq!(
        mta_sts(&c),
        "version: STSv1\nmode: enforce\nmx: chat.example.org\nmax_age: 2419200\n"
    );
    assert_eq!(ROBOTS_TXT, "User-agent: *\nDisallow: /\n");
}

#[test]
fn sizes_for_people() {
    for (bytes, text) in [
        (31_457_280, "30 MiB"),
        (500 * 1024 * 1024, "500 MiB"),
        (1 << 30, "1 GiB"),
        (1_000_000, "1.0 MiB"),
        (1_500_000, "1.5 MiB"),
    ] {
        assert_eq!(human_size(bytes), text, "{bytes}");
    }
}

#[test]
fn a_self_signed_relay_invites_through_its_new_page() {
    let c = config("");
    let ip = Config::parse("[params]\nmail_domain = 192.0.2.1\n")
        .unwrap()
        .0;
    let site = Site::relay(&ip);
    assert!(site.self_signed && !Site::relay(&c).self_signed);
    assert_eq!(site.invite(), "https://192.0.2.1/new");
    let index = &render(&ip, &site)[0].text;
    assert_eq!(index.matches("href=\"https://192.0.2.1/new\"").count(), 2);
    assert!(!index.contains("DCACCOUNT"));
    let conf = nginx_conf(&NginxSite::relay(&ip, "/c", "/k"));
    assert!(!conf.contains("dcaccount:"), "{conf}");
    assert!(conf.contains("fastcgi_pass unix:/run/fcgiwrap.socket;"));
    let conf = nginx_conf(&NginxSite::relay(&c, "/c", "/k"));
    assert!(NGINX_TEMPLATE.contains(DCACCOUNT_REDIRECT));
    assert!(conf.contains("return 302 dcaccount:https://chat.example.org/new;"));
}
