//! The three HTML pages: home (invite QR code and link), info (limits,
//! account deletion) and privacy (filled from the `privacy_*` keys). One
//! self-contained file each: inline CSS, no scripts, no external assets, a
//! single column that fits a phone. The home page's QR code comes from
//! [`crate::qr`], which must not depend on this module (both escape text
//! with [`crate::escape`]).

use chatmail_config::Config;

use crate::escape::escape;
use crate::{Site, human_size};

const CSS: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:1.05rem/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
color:#1d1d1f;background:#fafafa}\
nav{display:flex;flex-wrap:wrap;gap:.2rem 1rem;padding:.7rem 1rem;background:#fff;\
border-bottom:1px solid #e3e3e3}\
nav a{color:#333;text-decoration:none}nav a.here{font-weight:600}\
nav .domain{margin-left:auto;color:#777}\
main{max-width:40rem;margin:0 auto;padding:1rem 1.2rem 3rem}\
h1{font-size:1.6rem;line-height:1.25;margin:1rem 0 .5rem;overflow-wrap:anywhere}\
h2{font-size:1.2rem;margin:1.8rem 0 .4rem}\
a{color:#0a58ca}\
.cta{display:block;margin:1.2rem 0;padding:.9rem 1rem;border-radius:.6rem;background:#0a58ca;\
color:#fff;text-align:center;font-weight:600;text-decoration:none;overflow-wrap:anywhere}\
.qrbox{text-align:center;margin:1rem 0}\
.qr{width:min(18rem,80vw);height:auto;display:inline-block}\
.invite{font:.8rem ui-monospace,monospace;color:#555;overflow-wrap:anywhere}\
ol,ul{padding-left:1.3rem}li{margin:.3rem 0}\
pre{white-space:pre-wrap;font:inherit;margin:.3rem 0;padding:.5rem .7rem;background:#f0f0f0;\
border-radius:.4rem}\
footer{color:#777;font-size:.85rem;margin-top:2.5rem}";

/// The page frame: head, navigation, `body` in `<main>`.
fn page(config: &Config, here: &str, title: &str, body: &str) -> String {
    let domain = escape(&config.mail_domain);
    let link = |href: &str, name: &str| {
        let class = if href == here { " class=\"here\"" } else { "" };
        format!("<a href=\"{href}\"{class}>{name}</a>")
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · {domain}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <nav>{}{}{}<span class=\"domain\">{domain}</span></nav>\n<main>\n{body}\
         <footer>{domain} is a chatmail relay for <a href=\"https://delta.chat\">Delta Chat</a>.\
         </footer>\n</main>\n</body>\n</html>\n",
        link("index.html", "Home"),
        link("info.html", "Info"),
        link("privacy.html", "Privacy"),
        title = escape(title),
    )
}

/// The relay's limits as list items, shared by the home and info pages.
fn limits(config: &Config) -> String {
    format!(
        "<li>Messages can be up to {msg} large.</li>\n\
         <li>Each address can keep up to {mailbox} on the relay; the oldest messages \
         make room for new ones.</li>\n\
         <li>Every message is deleted from the relay {days} days after it arrived \
         (large ones after {large} days): your devices keep their copies.</li>\n\
         <li>Addresses not used for {inactive} days are deleted with all their data.</li>\n",
        msg = human_size(config.max_message_size),
        mailbox = human_size(config.max_mailbox_size.bytes),
        days = config.delete_mails_after,
        large = config.delete_large_after,
        inactive = config.delete_inactive_users_after,
    )
}

/// The home page: what the relay is, the invite as a button and as a QR
/// code, how to start, and the limits.
pub fn index(config: &Config, site: &Site) -> String {
    let domain = escape(&config.mail_domain);
    let invite = site.invite();
    let href = escape(&invite);
    let qr = crate::qr::qr_svg(&invite, &format!("QR code: {invite}")).unwrap_or_default();
    let body = format!(
        "<h1>{domain}</h1>\n\
         <p>Welcome to this chatmail relay: instant, end-to-end encrypted messaging with \
         <a href=\"https://delta.chat\">Delta Chat</a>, interoperable with any e-mail \
         address. It asks for no phone number and no personal data \
         (see the <a href=\"privacy.html\">privacy policy</a>).</p>\n\
         <a class=\"cta\" href=\"{href}\">Get a {domain} chat profile</a>\n\
         <p>Viewing this on another device? <strong>Scan this QR code</strong> with \
         Delta Chat{camera}:</p>\n\
         <div class=\"qrbox\"><a href=\"{href}\">{qr}</a>\
         <div class=\"invite\">{href}</div></div>\n\
         <h2>How to start</h2>\n<ol>\n\
         <li>Install Delta Chat from <a href=\"https://get.delta.chat\">get.delta.chat</a> \
         or your app store.</li>\n\
         <li>Tap the button above on your phone, or in the app choose \
         <em>Create new profile</em>, then <em>Use another server</em>, and scan the QR \
         code.</li>\n\
         <li>Choose your name and avatar.</li>\n\
         <li>Start chatting: share your own QR invite code from the app with the people \
         you want to reach.</li>\n</ol>\n\
         <h2>Limits</h2>\n<ul>\n{limits}</ul>\n\
         <p><a href=\"info.html\">More about this relay</a></p>\n",
        limits = limits(config),
        camera = if site.self_signed {
            " or your phone's camera and open the link"
        } else {
            ""
        },
    );
    page(config, "index.html", &config.mail_domain, &body)
}

/// The info page: limits, encryption rule, account deletion, contact.
pub fn info(config: &Config) -> String {
    let domain = escape(&config.mail_domain);
    let contact = match &config.privacy_mail {
        Some(mail) if !mail.trim().is_empty() => format!(
            "<p>Questions or requests about your account: write from that account to \
             <a href=\"mailto:{m}\">{m}</a>.</p>\n",
            m = escape(mail.trim())
        ),
        _ => String::new(),
    };
    let body = format!(
        "<h1>About {domain}</h1>\n\
         <p>{domain} gives everyone an e-mail address tuned for chatting with Delta Chat: \
         accounts are made on the spot, messages are relayed and kept only briefly, and \
         the relay speaks standard IMAP and SMTP with every other mail server.</p>\n\
         <h2>Limits</h2>\n<ul>\n{limits}\
         <li>You can send up to {rate} messages per minute.</li>\n\
         <li>Unencrypted messages are refused, except to addresses on {domain} itself. \
         Once you and a contact have scanned each other's QR invite codes, Delta Chat \
         encrypts everything and your messages reach any mail server.</li>\n</ul>\n\
         <h2 id=\"account-deletion\">Deleting your account</h2>\n\
         <p>Remove the profile in Delta Chat on every device that uses it. The relay \
         deletes the address and everything stored for it {inactive} days after its last \
         login.</p>\n{contact}\
         <h2>Software</h2>\n\
         <p>This relay runs Debian's Postfix and Dovecot with the chatmail helpers, and \
         keeps no logs of IP addresses together with addresses.</p>\n",
        limits = limits(config),
        rate = config.max_user_send_per_minute,
        inactive = config.delete_inactive_users_after,
    );
    page(
        config,
        "info.html",
        &format!("About {}", config.mail_domain),
        &body,
    )
}

/// A multi-line `privacy_*` value as a preformatted block, or a note that
/// the operator left it out.
fn privacy_value(value: Option<&String>, missing: &str) -> String {
    match value.map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(v) => format!("<pre>{}</pre>\n", escape(v)),
        None => format!("<p><em>{missing}</em></p>\n"),
    }
}

/// The privacy policy, with the operator's details from `privacy_postal`,
/// `privacy_mail`, `privacy_pdo` and `privacy_supervisor`.
pub fn privacy(config: &Config) -> String {
    let domain = escape(&config.mail_domain);
    let mail = match config.privacy_mail.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => format!(
            "<p>E-mail: <a href=\"mailto:{m}\">{m}</a></p>\n",
            m = escape(m)
        ),
        _ => "<p><em>No contact address has been published.</em></p>\n".to_owned(),
    };
    let body = format!(
        "<h1>Privacy policy of {domain}</h1>\n\
         <h2>In short</h2>\n\
         <p>This relay asks for no personal data and keeps as little as it can. It exists \
         to pass end-to-end encrypted messages between Delta Chat apps. It</p>\n<ul>\n\
         <li>deletes every message at the latest {days} days after it arrived,</li>\n\
         <li>refuses to send unencrypted messages to other servers,</li>\n\
         <li>does not store IP addresses and does not link them to addresses.</li>\n</ul>\n\
         <h2>1. Who is responsible</h2>\n{postal}{mail}\
         <p>Data protection officer:</p>\n{pdo}\
         <h2>2. What is processed, and why</h2>\n<ul>\n\
         <li><strong>Your address and password.</strong> An account is made when Delta Chat \
         first logs in with credentials handed out by this relay (scanning the QR code or \
         tapping the invite link). Nothing else about you is asked for. Only a hash of the \
         password is stored.</li>\n\
         <li><strong>Messages.</strong> Messages are stored until your devices fetched \
         them and at most {days} days, and are deleted earlier when the mailbox limit of \
         {mailbox} is reached. Their content is end-to-end encrypted: the relay cannot \
         read it.</li>\n\
         <li><strong>Delivery data.</strong> To deliver mail and to keep the service \
         working, the relay processes message headers and the SMTP conversation, and keeps \
         short-lived logs to fix delivery problems.</li>\n\
         <li><strong>Limits against abuse.</strong> Sending rates, mailbox and message \
         sizes are limited; this needs counting per address, nothing more.</li>\n\
         <li><strong>Push notifications.</strong> If your device asks for them, the relay \
         keeps an opaque device token and tells Delta Chat's notification service that \
         something arrived, never what or from whom.</li>\n</ul>\n\
         <p>The processing is needed to provide the service you asked for (Art. 6 (1) \
         lit. b GDPR); keeping the service secure and free of abuse is our legitimate \
         interest (Art. 6 (1) lit. f GDPR).</p>\n\
         <h2>3. How long</h2>\n\
         <p>Messages: at most {days} days. Accounts: deleted with all their data {inactive} \
         days after the last login. Logs: a few days.</p>\n\
         <h2>4. Your rights</h2>\n\
         <p>You may ask for access to, correction or deletion of your data, restrict or \
         object to its processing, and take it with you (every message can be fetched and \
         deleted over IMAP at any time). Write to the address above from the account \
         concerned.</p>\n\
         <h2>5. Supervisory authority</h2>\n\
         <p>You may complain to a data protection supervisory authority, in particular:</p>\n\
         {supervisor}",
        days = config.delete_mails_after,
        inactive = config.delete_inactive_users_after,
        mailbox = human_size(config.max_mailbox_size.bytes),
        postal = privacy_value(
            config.privacy_postal.as_ref(),
            "The operator has not published a postal address."
        ),
        pdo = privacy_value(config.privacy_pdo.as_ref(), "None named."),
        supervisor = privacy_value(
            config.privacy_supervisor.as_ref(),
            "The one responsible where you live."
        ),
    );
    page(
        config,
        "privacy.html",
        &format!("Privacy policy of {}", config.mail_domain),
        &body,
    )
}
