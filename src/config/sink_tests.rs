//! The sinks' sections as the whole configuration loads them (moved from the sinks crate,
//! which cannot load a whole `Config`).

use crate::config::Config;

fn load(text: &str) -> Result<Config, crate::config::ConfigError> {
    Config::from_toml_with_env(text, "t.toml", Vec::<(String, String)>::new())
}

#[test]
fn four_sinks_build_with_routes_and_secrets() {
    let c = load(
        r#"
[sinks.zendesk]
url = "https://x.zendesk.com"
email = "a@x.test"
token = "t"
session_code_field_id = 360001
tickets = '^\d+$'
[sinks.freshservice]
url = "https://x.freshservice.com"
api_key = "k"
[sinks.jsm]
url = "https://x.atlassian.net"
deployment = "data_center"
token = "pat"
tickets = '^[A-Z]+-\d+$'
sources = ["teamviewer"]
[sinks.glpi]
url = "https://glpi.x.test/apirest.php"
user_token = "u"
"#,
    )
    .unwrap();
    c.check_secrets().unwrap();
    let routes = c.sinks.routes();
    assert_eq!(routes.iter().map(|r| r.0).collect::<Vec<_>>(), ["zendesk", "freshservice", "jsm", "glpi"]);
    let ctx = crate::sinks::config::BuildCtx { timeout: std::time::Duration::from_secs(5), inline_limit: 20_000 };
    let sinks = c.sinks.build(&ctx).unwrap();
    assert_eq!(sinks.len(), 4);
    assert_eq!(sinks["zendesk"].max_batch(), crate::sinks::zendesk::DEFAULT_MAX_BATCH);
    assert_eq!(sinks["glpi"].max_batch(), 1);
}

#[test]
fn bad_keys_are_named() {
    let e = load("[sinks.zendesk]\nurl = \"https://x.zendesk.com\"\ntoken = \"t\"\n").unwrap_err().to_string();
    assert!(e.contains("sinks.zendesk.email"), "{e}");
    let e = load("[sinks.glpi]\nurl = \"https://glpi.x.test/\"\n").unwrap_err().to_string();
    assert!(e.contains("sinks.glpi.url"), "{e}");
    let e = load("[sinks.jsm]\nurl = \"https://x\"\nemail = \"a\"\ntickets = \"(\"\n").unwrap_err().to_string();
    assert!(e.contains("sinks.jsm.tickets"), "{e}");
    let e = load("[sinks.freshservice]\nurl = \"https://x\"\n").unwrap().check_secrets().unwrap_err().to_string();
    assert!(e.starts_with("sinks.freshservice.api_key"), "{e}");
    let e = load("[sinks.glpi]\nurl = \"https://g/apirest.php\"\nuser_tokn = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("user_tokn"), "{e}");
    let e = load("[sinks.webhook]\nurl = \"https://h\"\nsources = [\"zoom:helpdesk\"]\n").unwrap_err().to_string();
    assert!(e.contains("sinks.webhook.sources") && e.contains("unknown source \"zoom:helpdesk\""), "{e}");
    let c = load("[sinks.webhook]\nurl = \"https://h\"\nsources = [\"Splashtop\", \"zoom\", \"visioconference\"]\n");
    assert!(c.is_ok(), "{:?}", c.err());
}

#[test]
fn request_tracker_builds_from_its_section() {
    let c = load(
        r#"
[sinks.rt]
url = "https://rt.example.test/rt"
token = "1-14-abc"
session_code_field = "Session code"
tickets = '^\d+$'
"#,
    )
    .unwrap();
    c.check_secrets().unwrap();
    assert_eq!(c.sinks.routes().iter().map(|r| r.0).collect::<Vec<_>>(), ["rt"]);
    let ctx = crate::sinks::config::BuildCtx { timeout: std::time::Duration::from_secs(5), inline_limit: 20_000 };
    assert_eq!(c.sinks.build(&ctx).unwrap()["rt"].name(), "rt");
    let e = load("[sinks.rt]\nurl = \"https://rt.x\"\n").unwrap().check_secrets().unwrap_err().to_string();
    assert!(e.starts_with("sinks.rt.token") && e.contains("rt_token"), "{e}");
    let e = load("[sinks.rt]\nurl = \"https://rt.x\"\ntoken = \"t\"\nsession_code_field = \"x}' OR '\"\n").unwrap_err();
    assert!(e.to_string().contains("sinks.rt.session_code_field"), "{e}");
}

#[test]
fn zammad_builds_from_its_section() {
    let c = load("[sinks.zammad]\nurl = \"https://zammad.example.test\"\nauth = \"oauth\"\ntoken = \"t\"\n").unwrap();
    c.check_secrets().unwrap();
    let ctx = crate::sinks::config::BuildCtx { timeout: std::time::Duration::from_secs(5), inline_limit: 20_000 };
    assert_eq!(c.sinks.build(&ctx).unwrap()["zammad"].name(), "zammad");
    let e = load("[sinks.zammad]\nurl = \"https://z\"\n").unwrap().check_secrets().unwrap_err().to_string();
    assert!(e.starts_with("sinks.zammad.token") && e.contains("zammad_token"), "{e}");
    let e = load("[sinks.zammad]\nurl = \"https://z\"\ntoken = \"t\"\nsession_code_field = \"a OR b\"\n").unwrap_err();
    assert!(e.to_string().contains("sinks.zammad.session_code_field"), "{e}");
}

#[test]
fn servicenow_sections_ask_for_the_secrets_of_their_auth() {
    let ctx = crate::sinks::config::BuildCtx { timeout: std::time::Duration::from_secs(5), inline_limit: 20_000 };
    let basic = "[sinks.servicenow]\nurl = \"https://x.service-now.com\"\nuser = \"u\"\npassword = \"p\"\n";
    let c = load(basic).unwrap();
    c.check_secrets().unwrap();
    assert_eq!(c.sinks.build(&ctx).unwrap()["servicenow"].name(), "servicenow");
    assert_eq!(c.sinks.basic_pairs(), [("u".to_string(), "p".to_string())]);
    let cc = "[sinks.servicenow]\nurl = \"https://x.service-now.com\"\nauth = \"oauth_client_credentials\"\n\
              client_id = \"c\"\nclient_secret = \"s\"\ntable = \"u_support_case\"\n";
    load(cc).unwrap().check_secrets().unwrap();
    let e = load("[sinks.servicenow]\nurl = \"https://x\"\nauth = \"oauth_password\"\nuser = \"u\"\nclient_id = \"c\"\npassword = \"p\"\n")
        .unwrap()
        .check_secrets()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("sinks.servicenow.client_secret") && e.contains("servicenow_client_secret"), "{e}");
    let e = load("[sinks.servicenow]\nurl = \"https://x\"\n").unwrap_err().to_string();
    assert!(e.contains("sinks.servicenow.user"), "{e}");
    let e = load("[sinks.servicenow]\nurl = \"https://x\"\nuser = \"u\"\ntable = \"incident^x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sinks.servicenow.table"), "{e}");
}

#[test]
fn connectwise_section_names_each_missing_key_and_sends_its_basic_pair() {
    let ctx = crate::sinks::config::BuildCtx { timeout: std::time::Duration::from_secs(5), inline_limit: 20_000 };
    let ok =
        "[sinks.connectwise]\nurl = \"https://api-na.myconnectwise.net\"\ncompany = \"acme\"\npublic_key = \"pub\"\n\
              private_key = \"priv\"\nclient_id = \"cid\"\nmember = \"ticketsync\"\n";
    let c = load(ok).unwrap();
    c.check_secrets().unwrap();
    assert_eq!(c.sinks.build(&ctx).unwrap()["connectwise"].name(), "connectwise");
    assert_eq!(c.sinks.basic_pairs(), [("acme+pub".to_string(), "priv".to_string())]);
    let e = load("[sinks.connectwise]\nurl = \"https://cw\"\ncompany = \"a+b\"\n").unwrap_err().to_string();
    for key in ["company", "public_key", "client_id", "member"] {
        assert!(e.contains(&format!("sinks.connectwise.{key}")), "{key} missing from {e}");
    }
    let e = load("[sinks.connectwise]\nurl = \"https://cw/v4_6_release/apis/3.0\"\ncompany = \"a\"\npublic_key = \"p\"\nclient_id = \"i\"\nmember = \"m\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sinks.connectwise.url") && e.contains("API path is added"), "{e}");
    let no_key = ok.replace("private_key = \"priv\"\n", "");
    let e = load(&no_key).unwrap().check_secrets().unwrap_err().to_string();
    assert!(e.starts_with("sinks.connectwise.private_key") && e.contains("connectwise_private_key"), "{e}");
}

#[test]
fn autotask_section_defaults_its_discovery_and_names_bad_keys() {
    let ctx = crate::sinks::config::BuildCtx { timeout: std::time::Duration::from_secs(5), inline_limit: 20_000 };
    let ok = "[sinks.autotask]\nusername = \"api@x.example\"\nintegration_code = \"CODE\"\nsecret = \"s\"\n";
    let c = load(ok).unwrap();
    c.check_secrets().unwrap();
    let at = c.sinks.autotask.as_ref().unwrap();
    assert_eq!(
        (at.url.as_str(), at.note_type, at.publish, at.publish_public),
        ("https://webservices.autotask.net", 1, 1, 3)
    );
    assert_eq!(c.sinks.build(&ctx).unwrap()["autotask"].name(), "autotask");
    let e = load("[sinks.autotask]\nzone_url = \"https://webservices5.autotask.net/api\"\npublish = 0\n")
        .unwrap_err()
        .to_string();
    for key in ["zone_url", "username", "integration_code", "publish"] {
        assert!(e.contains(&format!("sinks.autotask.{key}")), "{key} missing from {e}");
    }
    let e = load(&ok.replace("secret = \"s\"\n", "")).unwrap().check_secrets().unwrap_err().to_string();
    assert!(e.starts_with("sinks.autotask.secret") && e.contains("autotask_secret"), "{e}");
}

#[test]
fn halopsa_section_checks_its_url_tenant_and_secret() {
    let ctx = crate::sinks::config::BuildCtx { timeout: std::time::Duration::from_secs(5), inline_limit: 20_000 };
    let ok = "[sinks.halopsa]\nurl = \"https://acme.halopsa.com\"\ntenant = \"acme\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";
    let c = load(ok).unwrap();
    c.check_secrets().unwrap();
    assert_eq!(c.sinks.build(&ctx).unwrap()["halopsa"].name(), "halopsa");
    let e = load("[sinks.halopsa]\nurl = \"https://acme.halopsa.com/api\"\ntenant = \"a b\"\noutcome = \"\"\n")
        .unwrap_err()
        .to_string();
    for key in ["url", "tenant", "client_id", "outcome"] {
        assert!(e.contains(&format!("sinks.halopsa.{key}")), "{key} missing from {e}");
    }
    let e = load(&ok.replace("client_secret = \"s\"\n", "")).unwrap().check_secrets().unwrap_err().to_string();
    assert!(e.starts_with("sinks.halopsa.client_secret") && e.contains("halopsa_client_secret"), "{e}");
}

#[test]
fn the_psas_take_time_entries_and_autotask_wants_its_role() {
    let ctx = crate::sinks::config::BuildCtx { timeout: std::time::Duration::from_secs(5), inline_limit: 20_000 };
    let text = "[sinks.connectwise]\nurl = \"https://cw\"\ncompany = \"c\"\npublic_key = \"p\"\nprivate_key = \"k\"\n\
                client_id = \"i\"\nmember = \"m\"\ntime_entries = true\n\
                [sinks.autotask]\nusername = \"u@x\"\nintegration_code = \"C\"\nsecret = \"s\"\ntime_entries = true\ntime_role_id = 7\n\
                [sinks.halopsa]\nurl = \"https://h\"\nclient_id = \"c\"\nclient_secret = \"s\"\ntime_entries = true\n";
    let built = load(text).unwrap().sinks.build(&ctx).unwrap();
    for name in ["connectwise", "autotask", "halopsa"] {
        assert!(built[name].supports_time_entries(), "{name}");
    }
    let e = load("[sinks.autotask]\nusername = \"u@x\"\nintegration_code = \"C\"\ntime_entries = true\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sinks.autotask.time_role_id") && e.contains("required with time_entries"), "{e}");
}
