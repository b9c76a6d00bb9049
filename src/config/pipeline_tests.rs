//! The pipeline's reading of the whole configuration (moved from the pipeline crate, which
//! cannot load a whole `Config`; before that from `sinks::config`: the sinks' sections know
//! nothing of the pipeline that reads their `concurrency` keys).

#[test]
fn concurrency_is_per_sink_and_optional() {
    let c = crate::config::Config::from_toml_with_env(
        "[sinks.redmine]\nurl = \"https://r\"\nconcurrency = 4\n[sinks.webhook]\nurl = \"https://h\"\n\
         [sinks.zendesk]\nurl = \"https://z\"\nemail = \"a@x\"\nconcurrency = 2\n",
        "t.toml",
        Vec::<(String, String)>::new(),
    )
    .unwrap();
    let m = c.sinks.concurrency();
    assert_eq!(m, std::collections::HashMap::from([("redmine".into(), 4), ("zendesk".into(), 2)]));
    let p = crate::pipeline::DeliveryPolicy::from_config(&c.outbox).with_sink_concurrency(m);
    assert_eq!((p.concurrency_for("redmine"), p.concurrency_for("webhook")), (4, crate::pipeline::DEFAULT_CONCURRENCY));
}
