//! The relay's web site as `chatmail setup` installs it (docs/web.md): the
//! pages rendered into [`WWW_ROOT`], the operator's page directory, the
//! ACME webroot and the nginx server block.

use std::path::{Path, PathBuf};

use chatmail_config::Config;
use chatmail_snippets::nginx::{self, ACME_ROOT, NGINX_CONF, NginxSite, WWW_OVERRIDE, WWW_ROOT};

use crate::machine_conf::TlsFiles;
use crate::roots::Roots;

/// Where the machine-wide directories of the web front are. With `--etc
/// DIR`, setup must not write outside DIR's parent: the rendered pages
/// then go to `DIR/../var/lib/chatmail/www`.
fn var_path(roots: &Roots, etc_given: bool, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    match (etc_given, roots.etc.parent()) {
        (true, Some(parent)) => parent.join(rel),
        _ => roots.root.join(rel),
    }
}

/// The files of the web front `setup` manages: each rendered page (always
/// rewritten: the operator's copies live in [`WWW_OVERRIDE`], which nginx
/// serves first), and, when nginx is installed, its server block, behind
/// the port-443 stream when nginx's stream module is enabled
/// (libnginx-mod-stream; docs/web.md). The second value is the service to
/// reload when the file changed.
pub fn planned_files(
    config: &Config,
    tls: &TlsFiles,
    roots: &Roots,
    etc_given: bool,
) -> Vec<(PathBuf, String, Option<&'static str>)> {
    let mut out = Vec::new();
    let www = var_path(roots, etc_given, WWW_ROOT);
    for file in chatmail_web::render(config, &chatmail_web::Site::relay(config)) {
        out.push((www.join(file.path), file.text, None));
    }
    if roots.host(Path::new("/etc/nginx")).is_dir() {
        let mut site = NginxSite::relay(
            config,
            &tls.cert.display().to_string(),
            &tls.key.display().to_string(),
        );
        // Without the module, nginx would refuse the stream block: the
        // server block then keeps port 443 itself.
        if nginx::stream_module_enabled(&roots.host(Path::new(nginx::NGINX_MODULES_ENABLED))) {
            let stream = nginx::StreamSite::relay(config);
            out.push((
                roots.host(Path::new(nginx::NGINX_STREAM_CONF)),
                nginx::stream_conf(&stream),
                Some("nginx"),
            ));
            site = site.behind(&stream);
        }
        out.push((
            roots.host(Path::new(NGINX_CONF)),
            roots.rewrite_etc_paths(&nginx::nginx_conf(&site)),
            Some("nginx"),
        ));
    }
    out
}

/// Makes the operator's page directory and the ACME webroot (empty; never
/// touched again). Returns what was created.
pub fn ensure_dirs(roots: &Roots, etc_given: bool) -> std::io::Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    for dir in [
        roots.host(Path::new(WWW_OVERRIDE)),
        var_path(roots, etc_given, ACME_ROOT),
    ] {
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            made.push(dir);
        }
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_etc_the_pages_stay_next_to_it() {
        let roots = Roots {
            etc: "/tmp/t/etc".into(),
            root: "/".into(),
        };
        let config = chatmail_config::Config::for_tests("chat.example.org", Path::new("/m"));
        let tls = TlsFiles::for_config(&config);
        let files = planned_files(&config, &tls, &roots, true);
        assert_eq!(
            files[0].0,
            Path::new("/tmp/t/var/lib/chatmail/www/index.html")
        );
        assert!(files.iter().all(|(p, _, _)| p.starts_with("/tmp/t/")));
        let relay = planned_files(&config, &tls, &Roots::default(), false);
        assert_eq!(relay[0].0, Path::new("/var/lib/chatmail/www/index.html"));
    }
}
