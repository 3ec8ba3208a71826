//! The shipped nginx server block (`nginx/chatmail.conf`) filled in for one
//! relay: names, listen addresses, certificate, web roots, the /new CGI.
//! `chatmail setup` writes it with the relay's values, `chatmail sandbox`
//! with loopback ports and paths in its state directory.

pub use crate::files::NGINX_TEMPLATE;

/// The values of one rendering of [`NGINX_TEMPLATE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxSite {
    /// `mail_domain`; `mta-sts.` and `www.` names are served too.
    pub domain: String,
    /// The `https://...` origin the `/new` redirect names (with a port when
    /// not 443).
    pub web_base: String,
    /// `listen` directives for plain HTTP, e.g. `["80", "[::]:80"]`.
    pub http_listen: Vec<String>,
    /// `listen` addresses for HTTPS (`ssl` is appended).
    pub https_listen: Vec<String>,
    /// The HTTPS port, for redirects from HTTP.
    pub https_port: u16,
    /// Certificate chain file.
    pub cert: String,
    /// Private key file.
    pub key: String,
    /// Webroot of ACME HTTP-01 challenges (`certbot --webroot -w`).
    pub acme_root: String,
    /// The operator's pages, served first.
    pub www_override: String,
    /// The pages rendered from `chatmail.ini`.
    pub www_root: String,
    /// fcgiwrap's socket.
    pub fcgiwrap_socket: String,
    /// The `/new` CGI script.
    pub newemail_cgi: String,
    /// Clients cannot verify the certificate: browsers' GETs on `/new` go to
    /// the CGI (a redirect to a fresh `dclogin:` URL) instead of to the
    /// `dcaccount:` invite.
    pub self_signed: bool,
    /// The socket of `chatmail mxdeliv`, where other relays' `POST
    /// /mxdeliv` goes; `None` when the relay accepts no mail over HTTPS.
    pub mxdeliv_socket: Option<String>,
}

/// The `/mxdeliv` location: the body streams through to the service
/// (which bounds it by `max_message_size` and answers 413 itself), with the
/// client's address, which Postfix's checks see (docs/design.md, "HTTPS
/// transport").
fn mxdeliv_location(socket: &str) -> String {
    format!(
        "    # Other chatmail relays deliver mail here (HTTPS transport).\n    \
         location = /mxdeliv {{\n        \
         client_max_body_size 0;\n        \
         proxy_request_buffering off;\n        \
         proxy_http_version 1.1;\n        \
         proxy_set_header X-Real-IP $remote_addr;\n        \
         proxy_set_header X-Real-Port $remote_port;\n        \
         proxy_read_timeout 330s;\n        \
         proxy_pass http://unix:{socket}:/mxdeliv;\n    \
         }}\n"
    )
}

/// The template's `/new` redirect of browsers to the `dcaccount:` invite.
pub const DCACCOUNT_REDIRECT: &str = "        if ($request_method = GET) {
            return 302 dcaccount:@WEB_BASE@/new;
        }
";

/// [`NGINX_TEMPLATE`] with `site`'s values.
pub fn nginx_conf(site: &NginxSite) -> String {
    let listen = |addrs: &[String], ssl: &str| {
        addrs
            .iter()
            .map(|a| format!("listen {a}{ssl};"))
            .collect::<Vec<_>>()
            .join("\n    ")
    };
    let suffix = if site.https_port == 443 {
        String::new()
    } else {
        format!(":{}", site.https_port)
    };
    let template = if site.self_signed {
        NGINX_TEMPLATE.replace(
            DCACCOUNT_REDIRECT,
            "        # Self-signed: the CGI redirects a browser's GET to a fresh dclogin: URL.\n",
        )
    } else {
        NGINX_TEMPLATE.to_owned()
    };
    template
        .replace("@LISTEN_HTTP@", &listen(&site.http_listen, ""))
        .replace("@LISTEN_HTTPS@", &listen(&site.https_listen, " ssl"))
        .replace("@HTTPS_PORT_SUFFIX@", &suffix)
        .replace("@WEB_BASE@", &site.web_base)
        .replace("@CERT@", &site.cert)
        .replace("@KEY@", &site.key)
        .replace("@ACME_ROOT@", &site.acme_root)
        .replace("@WWW_OVERRIDE@", &site.www_override)
        .replace("@WWW_ROOT@", &site.www_root)
        .replace(
            "@MXDELIV@\n",
            &site
                .mxdeliv_socket
                .as_deref()
                .map(mxdeliv_location)
                .unwrap_or_default(),
        )
        .replace("@FCGIWRAP_SOCKET@", &site.fcgiwrap_socket)
        .replace("@NEWEMAIL_CGI@", &site.newemail_cgi)
        .replace("@DOMAIN@", &site.domain)
}

/// Where `chatmail setup` renders the pages (overwritten on every run).
pub const WWW_ROOT: &str = "/var/lib/chatmail/www";
/// The operator's own pages: a file here wins over the rendered one and is
/// never written by `chatmail setup`.
pub const WWW_OVERRIDE: &str = "/etc/chatmail/www";
/// Webroot of ACME HTTP-01 challenges.
pub const ACME_ROOT: &str = "/var/lib/chatmail/acme";
/// Where `chatmail setup` puts the rendered server block (Debian's
/// nginx.conf includes `conf.d/*.conf` inside its `http` block).
pub const NGINX_CONF: &str = "/etc/nginx/conf.d/chatmail.conf";
/// Where the package installs the `/new` CGI wrapper
/// ([`crate::files::NEWEMAIL_CGI`]).
pub const NEWEMAIL_CGI_PATH: &str = "/usr/lib/chatmail-helpers/newemail.cgi";
/// Debian's fcgiwrap socket (fcgiwrap.socket unit).
pub const FCGIWRAP_SOCKET: &str = "/run/fcgiwrap.socket";

impl NginxSite {
    /// A relay on ports 80 and 443 (IPv6 too unless `disable_ipv6`), with
    /// the certificate Postfix and Dovecot use.
    pub fn relay(config: &chatmail_config::Config, cert: &str, key: &str) -> NginxSite {
        let both = |port: u16| {
            let mut v = vec![port.to_string()];
            if !config.disable_ipv6 {
                v.push(format!("[::]:{port}"));
            }
            v
        };
        NginxSite {
            domain: config.mail_domain.clone(),
            web_base: format!("https://{}", config.mail_domain),
            http_listen: both(80),
            https_listen: both(443),
            https_port: 443,
            cert: cert.to_owned(),
            key: key.to_owned(),
            acme_root: ACME_ROOT.to_owned(),
            www_override: WWW_OVERRIDE.to_owned(),
            www_root: WWW_ROOT.to_owned(),
            fcgiwrap_socket: FCGIWRAP_SOCKET.to_owned(),
            newemail_cgi: NEWEMAIL_CGI_PATH.to_owned(),
            self_signed: config.tls_cert().mode == chatmail_config::TlsCertMode::SelfSigned,
            mxdeliv_socket: Some(crate::daemons::MXDELIV.socket.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chatmail_config::Config;

    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(&format!(
            "[params]\nmail_domain = chat.example.org\n{extra}"
        ))
        .unwrap()
        .0
    }

    #[test]
    fn nginx_conf_fills_every_placeholder() {
        let c = config("");
        let conf = nginx_conf(&NginxSite::relay(&c, "/c.pem", "/k.pem"));
        let placeholders: Vec<&str> = conf
            .split('@')
            .skip(1)
            .step_by(2)
            .filter(|w| !w.is_empty() && w.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
            .filter(|w| *w != "NAME")
            .collect();
        assert_eq!(placeholders, Vec::<&str>::new());
        assert!(NGINX_TEMPLATE.contains("@LISTEN_HTTPS@"));
        for line in [
            "    listen 80;\n    listen [::]:80;\n",
            "    listen 443 ssl;\n    listen [::]:443 ssl;\n",
            "server_name chat.example.org mta-sts.chat.example.org www.chat.example.org;",
            "return 301 https://$chatmail_https_host$request_uri;",
            "    default chat.example.org;\n    mta-sts.chat.example.org mta-sts.chat.example.org;\n",
            "return 302 dcaccount:https://chat.example.org/new;",
            "ssl_certificate /c.pem;",
            "root /etc/chatmail/www;",
            "root /var/lib/chatmail/www;",
            "root /var/lib/chatmail/acme;",
            "fastcgi_pass unix:/run/fcgiwrap.socket;",
            "    location = /mxdeliv {\n",
            "        proxy_set_header X-Real-Port $remote_port;\n",
            "        proxy_pass http://unix:/run/chatmail-mxdeliv/mxdeliv.socket:/mxdeliv;\n",
        ] {
            assert!(conf.contains(line), "{line}\n{conf}");
        }
        let mut sandbox = NginxSite::relay(&c, "/c.pem", "/k.pem");
        sandbox.https_port = 8443;
        sandbox.https_listen = vec!["127.0.0.1:8443".into()];
        let conf = nginx_conf(&sandbox);
        assert!(conf.contains("return 301 https://$chatmail_https_host:8443$request_uri;"));
        // No redirect names the Host header as sent.
        assert!(!conf.contains("https://$host"), "{conf}");
        assert!(!conf.contains("$http_host"), "{conf}");
        assert!(conf.contains("listen 127.0.0.1:8443 ssl;"));
        let _ = Path::new(WWW_ROOT);
    }
}
