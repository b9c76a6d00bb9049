//! The sources' sections as the whole configuration loads them (moved from the sources
//! crate, which cannot load a whole `Config`).

use crate::config::Config;

fn load(extra: &str) -> Result<Config, String> {
    load_with(extra, "account_id = \"x\"")
}

fn load_with(extra: &str, account: &str) -> Result<Config, String> {
    let text = format!(
        "[sources.zoom]\n{extra}\n[[sources.zoom.accounts]]\nname = \"a\"\nauth = \"server_to_server\"\nclient_id = \"c\"\n{account}\n"
    );
    Config::from_toml_with_env(&text, "t.toml", Vec::<(String, String)>::new()).map_err(|e| e.to_string())
}

#[test]
fn bad_zoom_settings_name_their_key() {
    assert!(load("").is_ok());
    let err = load_with("", "").unwrap_err();
    assert!(err.contains("sources.zoom.accounts[0].account_id"), "{err}");
    let err = load("page_size = 301").unwrap_err();
    assert!(err.contains("sources.zoom.page_size"), "{err}");
    let err = load("pagesize = 3").unwrap_err();
    assert!(err.contains("pagesize"), "{err}");
    let err = load("default_account = \"b\"").unwrap_err();
    assert!(err.contains("sources.zoom.default_account"), "{err}");
}
