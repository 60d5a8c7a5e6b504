//! A private redis-server on a free loopback port, started by the test and stopped by PID: plain, with a
//! password, or TLS-only with a private CA the test makes with the `openssl` CLI.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard::cluster::redis::conn::{RedisEndpoint, TlsCa, CLUSTER_URL_SETTING};

/// How long a starting redis-server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A redis-server child process (never the machine's own Redis on 6379).
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// `requirepass`, if set: [`url`](Self::url) leaves it out, [`authed_url`](Self::authed_url) has it.
    password: Option<String>,
    /// Certificates of a TLS-only server.
    tls: Option<TlsFiles>,
    /// With `appendonly yes` (fsync always) into this directory, removed on drop: data survives a restart.
    aof_dir: Option<PathBuf>,
    /// `--replicaof 127.0.0.1 <port>`.
    replica_of: Option<u16>,
}

/// A private CA and a server certificate for 127.0.0.1, in a temporary directory removed on drop.
pub struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    /// Makes a CA and a server certificate (SAN IP 127.0.0.1) signed by it, with the `openssl` CLI.
    fn make() -> TlsFiles {
        let dir = std::env::temp_dir().join(format!("switchboard-tls-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let steps: [Vec<&str>; 3] = [
            [
                &[
                    "req",
                    "-x509",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=switchboard test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                ][..],
                &ec,
            ]
            .concat(),
            [&["req", "-new", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"][..], &ec]
                .concat(),
            vec![
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "san.ext",
                "-out",
                "server.crt",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl").args(&args).current_dir(&dir).output().expect("the openssl CLI runs");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        TlsFiles { dir }
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl RedisServer {
    /// Starts redis-server on a free port with persistence off, and waits until it answers.
    pub async fn start() -> RedisServer {
        RedisServer::launch(None, None).await
    }

    /// Like [`start`](Self::start), with `requirepass password`.
    pub async fn start_with_password(password: &str) -> RedisServer {
        RedisServer::launch(Some(password.to_owned()), None).await
    }

    /// A TLS-only server (`--port 0 --tls-port <free>`) with a certificate from a private CA made for it.
    pub async fn start_tls() -> RedisServer {
        RedisServer::launch(None, Some(TlsFiles::make())).await
    }

    /// A server that persists every write (`appendonly yes`, `appendfsync always`) in a temporary directory.
    pub async fn start_persistent() -> RedisServer {
        let dir = std::env::temp_dir().join(format!("switchboard-test-aof-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            password: None,
            tls: None,
            aof_dir: Some(dir),
            replica_of: None,
        };
        server.restart().await;
        server
    }

    async fn launch(password: Option<String>, tls: Option<TlsFiles>) -> RedisServer {
        let mut server = RedisServer { port: free_port(), child: None, password, tls, aof_dir: None, replica_of: None };
        server.restart().await;
        server
    }

    /// A replica of the plain server on `master_port` (for Sentinel topologies).
    pub async fn start_replica_of(master_port: u16) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            password: None,
            tls: None,
            aof_dir: None,
            replica_of: Some(master_port),
        };
        server.restart().await;
        server
    }

    /// The URL a client uses: `rediss://` for a TLS server, never with the password.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The URL with the password, if one is required.
    pub fn authed_url(&self) -> String {
        match &self.password {
            Some(p) => self.url().replacen("://", &format!("://:{p}@"), 1),
            None => self.url(),
        }
    }

    /// The private CA of a TLS server.
    pub fn tls_ca(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(TlsFiles::ca)
    }

    /// A client for inspection, through switchboard's own opener (so TLS uses the private CA).
    pub fn client(&self) -> redis::Client {
        let ca = self.tls_ca().map(|p| TlsCa::load(Path::new(&p)).expect("the test CA parses"));
        let endpoint = RedisEndpoint::open(CLUSTER_URL_SETTING, &self.authed_url(), ca.as_ref(), START_TIMEOUT);
        endpoint.expect("the test URL parses").client().expect("a fixed URL has a client")
    }

    /// Starts (again) on the same port.
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--save", ""].map(String::from).to_vec();
        match &self.aof_dir {
            None => args.extend(["--appendonly".into(), "no".into()]),
            Some(dir) => args.extend([
                "--appendonly".into(),
                "yes".into(),
                "--appendfsync".into(),
                "always".into(),
                "--dir".into(),
                dir.display().to_string(),
            ]),
        }
        match &self.tls {
            None => args.extend(["--port".into(), port]),
            Some(tls) => args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port,
                "--tls-cert-file".into(),
                tls.file("server.crt"),
                "--tls-key-file".into(),
                tls.file("server.key"),
                "--tls-ca-cert-file".into(),
                tls.file("ca.crt"),
                "--tls-auth-clients".into(),
                "no".into(),
            ]),
        }
        if let Some(p) = &self.password {
            args.extend(["--requirepass".into(), p.clone()]);
        }
        if let Some(master) = self.replica_of {
            // A replica loads its full sync through an RDB file: in the temporary directory, not the checkout.
            let dir = std::env::temp_dir();
            let file = format!("switchboard-replica-{}.rdb", self.port);
            args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
            args.extend(["--dir".into(), dir.display().to_string(), "--dbfilename".into(), file]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian package redis-server)");
        self.child = Some(child);
        let client = self.client();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server (by PID) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A connection for inspecting keys.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client().get_multiplexed_async_connection().await.unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.aof_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
