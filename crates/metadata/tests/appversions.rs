//! The appversions list the package installs: served on one line through
//! the dict, and in the shape Delta Chat's core parses (it drops a relay's
//! whole list when one value has an unexpected type).

mod common;

use common::*;

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../packaging/appversions.json"
);

/// Checks `v` the way core deserializes it: exactly the known keys,
/// non-empty strings, u32 version numbers, unique ids, and download links
/// only to Delta Chat's own places.
fn check_shape(v: &serde_json::Value) {
    let keys = |o: &serde_json::Value| {
        let mut k: Vec<String> = o.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(v), ["clients"]);
    let clients = v["clients"].as_array().unwrap();
    assert!(!clients.is_empty());
    let mut client_ids = Vec::new();
    for client in clients {
        assert_eq!(keys(client), ["clientId", "sources"]);
        let id = client["clientId"].as_str().unwrap();
        assert!(!id.is_empty());
        client_ids.push(id);
        let sources = client["sources"].as_array().unwrap();
        assert!(!sources.is_empty());
        let mut source_ids = Vec::new();
        for s in sources {
            assert_eq!(
                keys(s),
                ["downloadUrl", "sourceId", "versionInteger", "versionString"]
            );
            for k in ["sourceId", "versionString", "downloadUrl"] {
                assert!(!s[k].as_str().unwrap().is_empty(), "{k}");
            }
            let n = s["versionInteger"].as_u64().unwrap();
            assert!(u32::try_from(n).is_ok());
            let url = s["downloadUrl"].as_str().unwrap();
            assert!(
                url.starts_with("https://github.com/deltachat/")
                    || url.starts_with("https://download.delta.chat/"),
                "{url}"
            );
            source_ids.push(s["sourceId"].as_str().unwrap());
        }
        let n = source_ids.len();
        source_ids.sort();
        source_ids.dedup();
        assert_eq!(source_ids.len(), n, "duplicate sourceId");
    }
    let n = client_ids.len();
    client_ids.sort();
    client_ids.dedup();
    assert_eq!(client_ids.len(), n, "duplicate clientId");
}

#[tokio::test]
async fn the_shipped_list_is_served_on_one_line() {
    let world = World::new();
    let gateway = Gateway::start().await;
    let mut options = world.options(&gateway);
    options.appversions_file = SHIPPED.into();
    let server = world.start(options).await;
    let mut c = server.client().await;
    let answer = c
        .lookup(&info_key("appversions"), "abcdefghi@example.org")
        .await;
    let value = answer
        .strip_prefix('O')
        .and_then(|a| a.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{answer:?}"));
    assert!(!value.contains(['\n', '\r', '\t']), "{value:?}");
    let parsed: serde_json::Value = serde_json::from_str(value).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(SHIPPED).unwrap()).unwrap();
    assert_eq!(parsed, file);
    check_shape(&parsed);
    server.shutdown().await;
}

#[test]
fn the_config_default_is_where_the_package_installs_it() {
    assert_eq!(
        chatmail_metadata::MetadataOptions::from_config(&chatmail_config::Config::for_tests(
            "example.org",
            std::path::Path::new("/tmp")
        ))
        .appversions_file,
        std::path::Path::new("/usr/share/chatmail-helpers/appversions.json")
    );
}
