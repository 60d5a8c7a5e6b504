//! Through a load balancer: nginx (Debian package) in front of three nodes, round robin, no stickiness,
//! configured with the same locations file the local runner and docker-compose use.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::client::V2Session;

use crate::cluster::{Node, TOKEN};
use crate::helpers::*;
use crate::redis_server::RedisServer;

struct Nginx {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl Nginx {
    async fn start(nodes: &[&Node]) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nginx is installed (Debian package nginx or nginx-light)");
        let dir = std::env::temp_dir().join(format!("switchboard-nginx-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let locations = concat!(env!("CARGO_MANIFEST_DIR"), "/cluster/nginx/switchboard-locations.conf");
        let servers: String = nodes.iter().map(|n| format!("        server 127.0.0.1:{};\n", n.port)).collect();
        let temps: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .iter()
            .map(|t| format!("    {t}_temp_path {}/{t};\n", dir.display()))
            .collect();
        let conf = format!(
            "master_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon off;\nevents {{ worker_connections 1024; }}\n\
             http {{\n    access_log off;\n{temps}    upstream switchboard {{\n{servers}    }}\n    server {{\n        listen 127.0.0.1:{port};\n        include {locations};\n    }}\n}}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lb = Nginx { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while awc::Client::default().get(lb.http("/health/live")).send().await.is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        lb
    }

    fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[actix_web::test]
async fn through_nginx_one_login_is_the_same_user_on_every_node_and_a_message_reaches_all_her_sockets() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (Node::start(&redis, "a").await, Node::start(&redis, "b").await, Node::start(&redis, "c").await);
    let lb = Nginx::start(&[&a, &b, &c]).await;

    // Log in through nginx: the request lands on one node, the session lives in Redis.
    let client = awc::Client::builder().disable_redirects().finish();
    let r = client.post(lb.http("/login")).send_form(&[("username", "alice")]).await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();

    // Sockets through nginx land round robin on the nodes; every one is alice.
    let own_origin = format!("http://127.0.0.1:{}", lb.port);
    let mut sockets = Vec::new();
    for _ in 0..6 {
        let headers = [("Cookie", cookie.as_str()), ("Origin", own_origin.as_str())];
        let mut s = V2Session::connect_with_headers(&lb.ws(), "r", &headers).await.unwrap();
        assert_eq!(s.authid(), "alice");
        s.subscribe("mail").await.unwrap();
        sockets.push(s);
    }
    let mut bob = V2Session::connect(&lb.ws(), "r").await.unwrap();
    bob.subscribe("mail").await.unwrap();
    let response = client
        .get(lb.http("/api/users/alice/sessions"))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await;
    let sessions = response.unwrap();
    let nodes: HashSet<&str> = sessions.as_array().unwrap().iter().map(|s| s["node"].as_str().unwrap()).collect();
    assert!(nodes.len() >= 2, "no stickiness: alice's sockets should be spread, got {nodes:?}");
    assert_eq!(sessions.as_array().unwrap().len(), 6);

    // A message to alice, sent through nginx to whichever node, reaches all six sockets once and nobody else.
    let mut published = client
        .post(lb.http("/api/publish"))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .send_json(&json!({"topic": "mail", "args": ["for alice"], "eligible_authid": ["alice"]}))
        .await
        .unwrap();
    assert_eq!(published.status(), 200, "{:?}", published.body().await);
    for s in &mut sockets {
        assert_eq!(s.next_event(WAIT).await.unwrap().3, vec![json!("for alice")]);
        s.expect_no_event(QUIET).await.unwrap();
    }
    bob.expect_no_event(QUIET).await.unwrap();
}
