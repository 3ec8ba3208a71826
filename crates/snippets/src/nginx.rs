//! The shipped nginx server block (`nginx/chatmail.conf`) filled in for one
//! relay: names, listen addresses, certificate, web roots, the /new CGI;
//! and the stream in front of it on port 443 (`nginx/chatmail-stream.conf`)
//! that hands IMAP and SMTP clients to Dovecot and Postfix by their ALPN
//! protocol (docs/web.md). `chatmail setup` writes both with the relay's
//! values, `chatmail sandbox` with loopback ports and paths in its state
//! directory.

pub use crate::files::{NGINX_STREAM_TEMPLATE, NGINX_TEMPLATE};

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
    /// `listen` addresses for HTTPS (`ssl` is appended, and
    /// `proxy_protocol` with [`NginxSite::proxy_from`]).
    pub https_listen: Vec<String>,
    /// The HTTPS port clients use, for redirects from HTTP.
    pub https_port: u16,
    /// Behind the port-443 stream ([`NginxSite::behind`]): the address the
    /// stream connects from, whose PROXY protocol header names the client
    /// (`set_real_ip_from`). `None`: clients connect to the server block
    /// directly.
    pub proxy_from: Option<String>,
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

/// The line of [`NGINX_TEMPLATE`] that becomes the `realip` settings of a
/// server block behind the stream (nothing otherwise).
const REAL_IP_LINE: &str = "@REAL_IP@\n";

/// [`NGINX_TEMPLATE`] with `site`'s values.
pub fn nginx_conf(site: &NginxSite) -> String {
    let (https_flags, real_ip) = match &site.proxy_from {
        Some(from) => (
            " ssl proxy_protocol",
            format!(
                "\n    # Connections come from the port-443 stream (chatmail-stream.conf),\n    \
                 # whose PROXY protocol header names the client: /new's rate limit\n    \
                 # and the log see the client's address, not the stream's.\n    \
                 set_real_ip_from {from};\n    real_ip_header proxy_protocol;\n"
            ),
        ),
        None => (" ssl", String::new()),
    };
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
        .replace(REAL_IP_LINE, &real_ip)
        .replace("@LISTEN_HTTPS@", &listen(&site.https_listen, https_flags))
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
/// Where `chatmail setup` puts the rendered stream: a `stream` block must
/// be at nginx's top level, and Debian's nginx.conf includes
/// `modules-enabled/*.conf` there, in name order, so this file comes after
/// `50-mod-stream.conf`, which loads the module (docs/web.md).
pub const NGINX_STREAM_CONF: &str = "/etc/nginx/modules-enabled/90-chatmail-stream.conf";
/// The directory whose files load nginx's dynamic modules on Debian.
pub const NGINX_MODULES_ENABLED: &str = "/etc/nginx/modules-enabled";
/// The stream module's file, as `load_module` names it.
pub const STREAM_MODULE: &str = "ngx_stream_module.so";

/// The values of one rendering of [`NGINX_STREAM_TEMPLATE`]. Every address
/// is as nginx's `listen` and `proxy_pass` take it: `HOST:PORT`, or
/// `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSite {
    /// `listen` directives of the port clients use, e.g. `["443", "[::]:443"]`.
    pub listen: Vec<String>,
    /// Where the HTTPS server block listens (it gets every connection that
    /// offers neither `imap` nor `smtp`).
    pub https_backend: String,
    /// The stream's own hop to Dovecot, which takes the PROXY protocol
    /// header off again.
    pub imap_hop: String,
    /// The same for Postfix.
    pub smtp_hop: String,
    /// Dovecot's IMAP with implicit TLS.
    pub imaps: String,
    /// Postfix's submission with implicit TLS.
    pub submissions: String,
}

/// [`NGINX_STREAM_TEMPLATE`] with `site`'s values.
pub fn stream_conf(site: &StreamSite) -> String {
    let listen = site
        .listen
        .iter()
        .map(|a| format!("listen {a};"))
        .collect::<Vec<_>>()
        .join("\n        ");
    NGINX_STREAM_TEMPLATE
        .replace("@LISTEN_STREAM@", &listen)
        .replace("@HTTPS_BACKEND@", &site.https_backend)
        .replace("@IMAP_HOP@", &site.imap_hop)
        .replace("@SMTP_HOP@", &site.smtp_hop)
        .replace("@IMAPS@", &site.imaps)
        .replace("@SUBMISSIONS@", &site.submissions)
}

/// Whether the stream module is enabled in the nginx configuration whose
/// `modules-enabled` directory is `dir`: one of its files that comes
/// before [`NGINX_STREAM_CONF`] loads it (with Debian's
/// libnginx-mod-stream, `50-mod-stream.conf`). Only then may the
/// stream be installed: nginx refuses a `stream` block it does not know.
pub fn stream_module_enabled(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let ours = std::path::Path::new(NGINX_STREAM_CONF).file_name();
    entries.flatten().any(|e| {
        let name = e.file_name();
        // nginx.conf includes the files in name order: the module must be
        // loaded before the file with the stream block.
        name.to_string_lossy().ends_with(".conf")
            && Some(name.as_os_str()) < ours
            && std::fs::read_to_string(e.path()).is_ok_and(|text| {
                text.lines().any(|l| {
                    let l = l.trim_start();
                    l.starts_with("load_module") && l.contains(STREAM_MODULE)
                })
            })
    })
}

impl StreamSite {
    /// A relay's stream: port 443 (IPv6 too unless `disable_ipv6`) in
    /// front of the server block on 127.0.0.1:8443, Dovecot's 993 and
    /// Postfix's 465, through hops on 127.0.0.1:8993 and 127.0.0.1:8465.
    /// Loopback ports rather than Unix sockets: nginx does not start while
    /// a socket file of a killed instance is left over.
    pub fn relay(config: &chatmail_config::Config) -> StreamSite {
        let mut listen = vec!["443".to_owned()];
        if !config.disable_ipv6 {
            listen.push("[::]:443".to_owned());
        }
        StreamSite {
            listen,
            https_backend: "127.0.0.1:8443".into(),
            imap_hop: "127.0.0.1:8993".into(),
            smtp_hop: "127.0.0.1:8465".into(),
            imaps: "127.0.0.1:993".into(),
            submissions: "127.0.0.1:465".into(),
        }
    }
}

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
            mxdeliv_socket: config
                .accept_over_https
                .then(|| crate::daemons::MXDELIV.socket.to_owned()),
            proxy_from: None,
        }
    }

    /// This server block behind `stream`: it listens only where the stream
    /// sends the connections that are not IMAP or SMTP, and trusts the
    /// stream's PROXY protocol header there. Redirects still name the port
    /// clients use.
    #[must_use]
    pub fn behind(mut self, stream: &StreamSite) -> NginxSite {
        let backend = &stream.https_backend;
        self.https_listen = vec![backend.clone()];
        // `set_real_ip_from` takes an address (no port), or `unix:`.
        let from = if backend.starts_with("unix:") {
            "unix:".to_owned()
        } else {
            backend
                .rsplit_once(':')
                .map_or(backend.as_str(), |(host, _)| host)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        };
        self.proxy_from = Some(from);
        self
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
        assert!(!conf.contains("proxy_protocol"), "{conf}");
        let _ = Path::new(WWW_ROOT);
    }

    /// The `@NAME@` placeholders left in a rendering.
    fn placeholders(conf: &str) -> Vec<&str> {
        conf.split('@')
            .skip(1)
            .step_by(2)
            .filter(|w| !w.is_empty() && w.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
            .filter(|w| *w != "NAME")
            .collect()
    }

    #[test]
    fn stream_routes_by_alpn_to_dovecot_postfix_and_the_server_block() {
        let c = config("");
        let stream = StreamSite::relay(&c);
        let conf = stream_conf(&stream);
        assert_eq!(placeholders(&conf), Vec::<&str>::new());
        for line in [
            "        listen 443;\n        listen [::]:443;\n",
            "        ~(^|,)imap(,|$) 127.0.0.1:8993;\n",
            "        ~(^|,)smtp(,|$) 127.0.0.1:8465;\n",
            "        default 127.0.0.1:8443;\n",
            "        ssl_preread on;\n",
            "        proxy_protocol on;\n",
            "        listen 127.0.0.1:8993 proxy_protocol;\n        proxy_pass 127.0.0.1:993;\n",
            "        listen 127.0.0.1:8465 proxy_protocol;\n        proxy_pass 127.0.0.1:465;\n",
        ] {
            assert!(conf.contains(line), "{line}\n{conf}");
        }
        let v4 = config("disable_ipv6 = true\n");
        assert!(!stream_conf(&StreamSite::relay(&v4)).contains("[::]"));

        // The server block behind it: only on the backend, with the PROXY
        // protocol, trusting the stream's address for the client's; HTTP
        // still redirects to 443.
        let site = NginxSite::relay(&c, "/c.pem", "/k.pem").behind(&stream);
        let conf = nginx_conf(&site);
        assert_eq!(placeholders(&conf), Vec::<&str>::new());
        assert!(
            conf.contains("    listen 127.0.0.1:8443 ssl proxy_protocol;\n"),
            "{conf}"
        );
        assert!(!conf.contains("listen 443"), "{conf}");
        assert!(
            conf.contains("    set_real_ip_from 127.0.0.1;\n    real_ip_header proxy_protocol;\n")
        );
        assert!(conf.contains("return 301 https://$chatmail_https_host$request_uri;"));
        assert!(conf.contains("    listen 80;\n"));
        // Without the stream: no trace of it.
        let direct = nginx_conf(&NginxSite::relay(&c, "/c.pem", "/k.pem"));
        assert!(
            !direct.contains("real_ip") && !direct.contains("@REAL_IP@"),
            "{direct}"
        );

        let mut sandbox = stream.clone();
        sandbox.https_backend = "unix:/s/run/nginx/https.sock".into();
        let conf = nginx_conf(&NginxSite::relay(&c, "/c.pem", "/k.pem").behind(&sandbox));
        assert!(conf.contains("listen unix:/s/run/nginx/https.sock ssl proxy_protocol;"));
        assert!(conf.contains("set_real_ip_from unix:;"));
        sandbox.https_backend = "[::1]:8443".into();
        let conf = nginx_conf(&NginxSite::relay(&c, "/c.pem", "/k.pem").behind(&sandbox));
        assert!(conf.contains("set_real_ip_from ::1;"), "{conf}");
    }

    #[test]
    fn stream_module_is_enabled_by_a_file_before_ours() {
        let dir = std::env::temp_dir().join(format!("chatmail-modules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!stream_module_enabled(&dir), "no directory");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("50-mod-http-geoip.conf"),
            "load_module modules/ngx_http_geoip_module.so;\n",
        )
        .unwrap();
        assert!(!stream_module_enabled(&dir));
        // Our own file does not load it.
        std::fs::write(dir.join("90-chatmail-stream.conf"), "stream {}\n").unwrap();
        std::fs::write(
            dir.join("99-late.conf"),
            "load_module modules/ngx_stream_module.so;\n",
        )
        .unwrap();
        assert!(
            !stream_module_enabled(&dir),
            "loaded only after the stream block"
        );
        std::fs::write(
            dir.join("50-mod-stream.conf"),
            "# comment\nload_module modules/ngx_stream_module.so;\n",
        )
        .unwrap();
        assert!(stream_module_enabled(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
