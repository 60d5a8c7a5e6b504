//! Unit tests of the settings: defaults, file, environment and every refusal.

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[test]
fn embedded_default_is_valid_and_listens_on_8080() {
    let s = Settings::default();
    let from_file = Settings::from_toml(EMBEDDED_DEFAULT, "config/default.toml").unwrap();
    assert_eq!(format!("{s:?}"), format!("{from_file:?}"), "config/default.toml and the code defaults differ");
    s.validate().unwrap();
    assert_eq!(s.server.bind, "127.0.0.1:8080");
    assert!(s.redis.url.is_empty());
}

#[test]
fn shipped_example_file_parses() {
    let file = "config/example.toml";
    let text = std::fs::read_to_string(file).unwrap();
    Settings::from_toml(&text, file).unwrap().validate().unwrap();
}

#[test]
fn webhook_settings_are_checked_by_name() {
    let url = "[webhooks]\nurl = \"http://127.0.0.1:9/hooks\"\n";
    for (toml, key) in [
        ("[webhooks]\nurl = \"ftp://x/\"\nsecret = \"0123456789abcdef\"\n", "webhooks.url"),
        (url, "webhooks.secret (SWITCHBOARD_WEBHOOK_SECRET)"),
        (&format!("{url}secret = \"short\"\n"), "webhooks.secret (SWITCHBOARD_WEBHOOK_SECRET)"),
        ("[webhooks]\ntimeout = \"0s\"\n", "webhooks.timeout"),
        ("[webhooks]\nmax_attempts = 0\n", "webhooks.max_attempts"),
        ("[webhooks]\nmax_queue = 0\n", "webhooks.max_queue"),
    ] {
        let err = Settings::from_toml(toml, "x.toml").unwrap().validate().unwrap_err();
        assert!(err.to_string().contains(&format!("`{key}`")), "{toml}: {err}");
    }
    let err = Settings::from_toml("[webhooks]\nevents = [\"user.away\"]\n", "x.toml").unwrap_err().to_string();
    assert!(err.contains("events") && err.contains("user.away"), "{err}");
    let mut s = Settings::from_toml(&format!("{url}secret = \"0123456789abcdef\"\n"), "x.toml").unwrap();
    s.validate().unwrap();
    s.apply_env(|name| (name == "SWITCHBOARD_WEBHOOK_SECRET").then(|| "from-the-environment!".to_owned())).unwrap();
    assert_eq!(s.webhooks.secret, "from-the-environment!");
}

#[test]
fn safe_to_expose_limits_are_validated_by_name() {
    for (toml, key) in [
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        ("[websocket]\nwrite_timeout = \"0s\"\n", "websocket.write_timeout"),
        ("[websocket]\noutbound_bytes = 100\n", "websocket.outbound_bytes"),
        ("[websocket]\nmax_pattern_subscriptions = 0\n", "websocket.max_pattern_subscriptions"),
        ("[websocket]\ninbound_bytes_rate = 0\n", "websocket.inbound_bytes_rate"),
        ("[session]\nmax_sockets_per_user = 0\n", "session.max_sockets_per_user"),
        ("[wamp]\nmax_filter_entries = 0\n", "wamp.max_filter_entries"),
        ("[wamp]\nmax_prefixes = 0\n", "wamp.max_prefixes"),
        ("[meta]\nmax_list = 0\n", "meta.max_list"),
    ] {
        let err = Settings::from_toml(toml, "x.toml").unwrap().validate().unwrap_err();
        assert!(err.to_string().contains(key), "{toml}: {err}");
    }
    for (toml, key) in [
        ("[session]\non_too_many = \"kick\"\n", "on_too_many"),
        ("[access_policy]\ndefault = \"maybe\"\n", "default"),
        ("[meta]\nroles = \"admin\"\n", "roles"),
    ] {
        let err = Settings::from_toml(toml, "x.toml").unwrap_err();
        assert!(err.to_string().contains(key), "{toml}: {err}");
    }
}

#[test]
fn unknown_key_is_named() {
    let err = Settings::from_toml("[websocket]\npingg_interval = \"1s\"\n", "x.toml").unwrap_err();
    assert!(err.to_string().contains("pingg_interval"), "{err}");
}

#[test]
fn wrong_type_is_named() {
    let err = Settings::from_toml("[websocket]\nmax_message_size = \"big\"\n", "x.toml").unwrap_err();
    assert!(err.to_string().contains("max_message_size"), "{err}");
}

#[test]
fn out_of_range_values_are_named() {
    let mut s = Settings::from_toml("[websocket]\nidle_timeout = \"1s\"\nping_interval = \"5s\"\n", "x").unwrap();
    assert!(s.validate().unwrap_err().to_string().contains("websocket.idle_timeout"));
    s = Settings::default();
    s.apply_env(env(&[("SWITCHBOARD_BIND", "localhost")])).unwrap();
    assert!(s.validate().unwrap_err().to_string().contains("SWITCHBOARD_BIND"));
    let mut s = Settings::default();
    assert!(s.apply_env(env(&[("SWITCHBOARD_DEMO", "maybe")])).unwrap_err().to_string().contains("SWITCHBOARD_DEMO"));
    let s = Settings::from_toml("[[access]]\npattern = \"chat/x{y}\"\n", "x").unwrap();
    assert!(s.validate().unwrap_err().to_string().contains("access[0].pattern"));
    let s = Settings::from_toml("[[access]]\npattern = \"{username}\"\n", "x").unwrap();
    assert!(s.validate().unwrap_err().to_string().contains("access[0].pattern"));
    let err = Settings::from_toml("[access_policy]\ndefault = \"maybe\"\n", "x").unwrap_err();
    assert!(err.to_string().contains("default"), "{err}");
}

#[test]
fn session_key_must_be_base64_of_64_bytes_and_is_required_with_redis() {
    use base64::Engine;
    let mut s = Settings::default();
    s.apply_env(env(&[("SWITCHBOARD_SESSION_KEY", "short")])).unwrap();
    assert!(s.validate().unwrap_err().to_string().contains("SWITCHBOARD_SESSION_KEY"));
    let short = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    s.session.key = short;
    assert!(s.validate().unwrap_err().to_string().contains("at least 64"));
    let mut s = Settings::default();
    s.apply_env(env(&[("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:1")])).unwrap();
    assert!(s.validate().unwrap_err().to_string().contains("session.key"));
    s.session.key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    s.validate().unwrap();
    s.redis.url = "localhost:6379".into();
    assert!(s.validate().unwrap_err().to_string().contains("redis.url"));
}

#[test]
fn a_key_as_openssl_rand_base64_64_prints_it_is_accepted() {
    // `openssl rand -base64 64` wraps at 64 characters and ends with a newline; `export K=$(…)` keeps the
    // inner newline, and a key pasted into a file may carry spaces, tabs or CRLF line ends.
    let printed = "Cp11D3sZR7ndhi5wkWQHIRPfaKN3bB79hUENtfvqDHVoijB8PFb6RgwpUCp8+Feq\n4oH5l92Y6YvR0qHh+p/0WQ==\n";
    for text in [printed.to_owned(), printed.replace('\n', "\r\n"), format!("  {}\t", printed.replace('\n', " \n "))] {
        let mut s = Settings::default();
        s.apply_env(env(&[("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:1"), ("SWITCHBOARD_SESSION_KEY", &text)]))
            .unwrap();
        s.validate().unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(s.session.key_bytes().unwrap().unwrap().len(), 64, "{text:?}");
    }
}

#[test]
fn a_key_that_is_not_base64_is_refused_naming_the_key() {
    let mut s = Settings::default();
    s.apply_env(env(&[("SWITCHBOARD_SESSION_KEY", "Cp11D3sZR7ndhi5w\nkWQH!RPf\n")])).unwrap();
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("session.key (SWITCHBOARD_SESSION_KEY)") && err.contains("not valid base64"), "{err}");
}

#[test]
fn redis_keys_are_validated_by_name_and_the_session_url_defaults_to_the_cluster_url() {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let mut s = Settings::default();
    s.apply_env(env(&[("SWITCHBOARD_REDIS_URL", "redis://c:1"), ("SWITCHBOARD_SESSION_KEY", &key)])).unwrap();
    assert_eq!(s.session_redis_url(), "redis://c:1");
    s.apply_env(env(&[("SWITCHBOARD_SESSION_REDIS_URL", "rediss://s:2")])).unwrap();
    assert_eq!(s.session_redis_url(), "rediss://s:2");
    s.validate().unwrap();
    s.session.redis_url = "s:2".into();
    assert!(s.validate().unwrap_err().to_string().contains("SWITCHBOARD_SESSION_REDIS_URL"));

    let s = Settings::from_toml("[redis]\nconnect_timeout = \"0s\"\n", "x").unwrap();
    assert!(s.validate().unwrap_err().to_string().contains("redis.connect_timeout"));
    let mut s = Settings::default();
    s.apply_env(env(&[("SWITCHBOARD_REDIS_TLS_CA", "/etc/ca.pem"), ("SWITCHBOARD_REDIS_URL", "redis://c:1")])).unwrap();
    s.session.key = key.clone();
    assert!(s.validate().unwrap_err().to_string().contains("SWITCHBOARD_REDIS_TLS_CA"), "CA without rediss://");
    s.redis.url = "rediss://c:1".into();
    s.validate().unwrap();

    let mut s = Settings::default();
    s.session.redis_url = "redis://s:2".into();
    assert!(s.validate().unwrap_err().to_string().contains("session.key"), "sessions in Redis need the key");
}

#[test]
fn sentinel_urls_are_accepted_and_a_redis_cluster_is_checked_by_name() {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let mut s = Settings::default();
    s.session.key = key;
    s.redis.url = "redis+sentinel://h1:26379,h2/mymaster".into();
    s.validate().unwrap();
    s.redis.url = "rediss+sentinel://h1/mymaster".into();
    s.redis.tls_ca = "/etc/ca.pem".into();
    s.validate().unwrap();

    let mut s = Settings { session: s.session.clone(), ..Settings::default() };
    s.apply_env(env(&[("SWITCHBOARD_REDIS_CLUSTER", "redis://h1:7000,redis://h2:7001")])).unwrap();
    let e = s.validate().unwrap_err().to_string();
    assert!(e.contains("SWITCHBOARD_REDIS_CLUSTER") && e.contains("SWITCHBOARD_SESSION_REDIS_URL"), "{e}");
    assert!(!s.demo_enabled(), "a Redis Cluster is cluster mode");
    s.session.redis_url = "redis://sessions:6379".into();
    s.validate().unwrap();
    s.session.redis_url.clear();
    s.redis.url = "redis://sessions:6379".into();
    s.validate().unwrap();
    assert_eq!(s.session_redis_url(), "redis://sessions:6379", "redis.url then holds only the web sessions");
    s.redis.cluster = "redis://h1:7000,h2:7001".into();
    assert!(s.validate().unwrap_err().to_string().contains("seed 'h2:7001'"));
    s.redis.cluster = "redis://h1:7000".into();
    s.cluster.prefix = "{app}:".into();
    assert!(s.validate().unwrap_err().to_string().contains("cluster.prefix"));
}

#[test]
fn allowed_origins_come_from_the_environment_and_are_checked() {
    let mut s = Settings::default();
    s.apply_env(env(&[("SWITCHBOARD_ALLOWED_ORIGINS", "https://a.example, http://localhost:3000")])).unwrap();
    assert_eq!(s.server.allowed_origins, vec!["https://a.example", "http://localhost:3000"]);
    s.validate().unwrap();
    s.server.allowed_origins = vec!["a.example".into()];
    assert!(s.validate().unwrap_err().to_string().contains("SWITCHBOARD_ALLOWED_ORIGINS"));
}

#[test]
fn demo_is_on_in_embedded_mode_and_off_with_redis_unless_set() {
    let mut s = Settings::default();
    assert!(s.demo_enabled());
    s.redis.url = "redis://127.0.0.1:1".into();
    assert!(!s.demo_enabled());
    s.server.demo = Some(true);
    assert!(s.demo_enabled());
}

#[test]
fn environment_beats_the_file() {
    let mut s = Settings::from_toml("[server]\nbind = \"127.0.0.1:9000\"\ndemo = true\n", "x").unwrap();
    assert!(s.demo_enabled());
    s.apply_env(env(&[("SWITCHBOARD_BIND", "127.0.0.1:9100"), ("SWITCHBOARD_DEMO", "false")])).unwrap();
    assert_eq!(s.server.bind, "127.0.0.1:9100");
    assert!(!s.demo_enabled());
}

#[test]
fn a_publish_backlog_smaller_than_one_message_is_refused_naming_the_key() {
    let s = Settings::from_toml("[server]\npublish_backlog_bytes = 1000\n", "x").unwrap();
    assert!(s.validate().unwrap_err().to_string().contains("server.publish_backlog_bytes"));
    let s = Settings::from_toml("[server]\npublish_backlog_bytes = 65536\n", "x").unwrap();
    s.validate().unwrap();
}
