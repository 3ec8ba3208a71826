//! What a running sandbox tells: `relay.json` for scripts and tests, and a
//! text for people.

use std::fs;

use chatmail_config::Config;
use chatmail_snippets::daemons::DAEMONS;
use serde_json::json;

use crate::ports::{Ports, metrics_urls};
use crate::{Context, Options, Sandbox, SandboxError};

/// What a start learnt on the way, for `relay.json`.
pub(crate) struct Facts {
    pub(crate) ports: Ports,
    pub(crate) metrics_base: u16,
    pub(crate) dovecot_version: String,
    pub(crate) postfix_version: String,
    pub(crate) dkim_txt: Option<String>,
    pub(crate) web: serde_json::Map<String, serde_json::Value>,
}

impl Sandbox {
    /// Writes `relay.json` (what tests and tools need to know of this relay)
    /// atomically, and fresh credentials for the `/new` page.
    pub(crate) fn write_info(
        &mut self,
        opts: &Options,
        config: &Config,
        facts: Facts,
    ) -> Result<(), SandboxError> {
        let ports = &facts.ports;
        let domain = config.address_domain().to_owned();
        let l = &self.layout;
        let sockets: serde_json::Map<String, serde_json::Value> = DAEMONS
            .iter()
            .map(|d| (d.name.to_owned(), json!(l.socket(d))))
            .collect();
        let pids: serde_json::Map<String, serde_json::Value> = self
            .children
            .iter()
            .map(|(name, child)| ((*name).to_owned(), json!(child.id())))
            .collect();
        self.info = json!({
            "domain": domain,
            "host": "127.0.0.1",
            "imaps_port": ports.imaps,
            "imap_port": ports.imap,
            "submissions_port": ports.submissions,
            "submission_port": ports.submission,
            "smtp_port": ports.smtp,
            "config": l.ini(),
            "sockets": sockets,
            "mailboxes_dir": config.mailboxes_dir,
            "nocreate_file": config.nocreate_file,
            "tls_cert": l.p("tls/cert.pem"),
            "postfix_config_dir": l.postfix_etc(),
            "dovecot_config": l.dovecot_conf(),
            "log_dir": l.p("log"),
            "pids": pids,
            "dovecot_version": facts.dovecot_version,
            "postfix_version": facts.postfix_version,
            "debian_root": opts.root,
            // Runs the relay's Postfix/Dovecot tools (doveadm, postconf, ...)
            // when they come from a Debian root; null when they are the machine's.
            "root_exec": self.root_exec,
            "metrics": metrics_urls(facts.metrics_base),
            "dkim_selector": config.dkim_selector,
            "dkim_txt": facts.dkim_txt,
        });
        if let Some(info) = self.info.as_object_mut() {
            info.extend(facts.web);
        }
        self.credentials =
            chatmail_accounts::fresh_credentials(config).ctx(|| "random credentials".into())?;
        let json = serde_json::to_string_pretty(&self.info).unwrap_or_default();
        let tmp = l.p("relay.json.tmp");
        fs::write(&tmp, json + "\n").ctx(|| "writing relay.json".into())?;
        fs::rename(&tmp, l.p("relay.json")).ctx(|| "writing relay.json".into())?;
        Ok(())
    }

    /// A text for people: endpoints, credentials and where things are.
    pub fn describe(&self) -> String {
        let i = &self.info;
        format!(
            "chatmail sandbox relay for {domain} is running (Ctrl-C stops it)\n\
             \n  IMAP        127.0.0.1:{imaps} (implicit TLS), 127.0.0.1:{imap} (STARTTLS)\n  \
             SMTP        127.0.0.1:{subs} (implicit TLS), 127.0.0.1:{sub} (STARTTLS, submission)\n  \
             Port 25     127.0.0.1:{smtp} (mail from other servers)\n  \
             TLS         {tls}: {cert}\n  \
             Web         {web}/ (http on 127.0.0.1:{http}, https on 127.0.0.1:{https})\n\
             \n  Log in with any new address @{domain} to create it, for example:\n  \
             address     {addr}\n  password    {pw}\n\
             \n  Config {config}, logs in {logs}, details in {json}\n",
            domain = i["domain"].as_str().unwrap_or_default(),
            imaps = i["imaps_port"],
            imap = i["imap_port"],
            subs = i["submissions_port"],
            sub = i["submission_port"],
            smtp = i["smtp_port"],
            cert = i["tls_cert"].as_str().unwrap_or_default(),
            tls = i["acme_directory"].as_str().unwrap_or("self-signed"),
            web = i["web_base"].as_str().unwrap_or_default(),
            http = i["http_port"],
            https = i["https_port"],
            addr = self.credentials.0,
            pw = self.credentials.1,
            config = i["config"].as_str().unwrap_or_default(),
            logs = i["log_dir"].as_str().unwrap_or_default(),
            json = self.layout.p("relay.json").display(),
        )
    }
}
