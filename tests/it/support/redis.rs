//! A real `redis-server` (Debian package redis-server) on a free loopback port, which a
//! test can kill and start again on the same port; and a TCP proxy in front of anything
//! that delays every chunk, to make Redis slow.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// TLS only: the directory with the test CA (`ca.pem`) and the server's certificate.
    tls: Option<PathBuf>,
}

impl RedisServer {
    /// Starts redis-server without persistence and waits until it answers PING.
    pub async fn start() -> Self {
        let port = super::dead_address().await.port();
        let mut server = RedisServer { port, child: None, tls: None };
        server.restart().await;
        server
    }

    /// The same, speaking TLS only, with a certificate for 127.0.0.1 from a CA made here
    /// (openssl); [`Self::ca_file`] is that CA.
    pub async fn start_tls() -> Self {
        let port = super::dead_address().await.port();
        let dir = std::env::temp_dir().join(format!("tierwise-redis-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = "set -e
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 1 -subj '/CN=tierwise test CA'
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1'
            printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext.cnf
";
        let made = std::process::Command::new("sh").arg("-c").arg(script).current_dir(&dir).output().unwrap();
        assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
        let mut server = RedisServer { port, child: None, tls: Some(dir) };
        server.restart().await;
        server
    }

    pub fn ca_file(&self) -> PathBuf {
        self.tls.as_ref().expect("a TLS server").join("ca.pem")
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again) on its port; the data is gone, as after a crash without persistence.
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        let mut args = vec!["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
        let files: Vec<String> = match &self.tls {
            None => vec![],
            Some(dir) => ["server.pem", "server.key"].iter().map(|f| dir.join(f).display().to_string()).collect(),
        };
        match &self.tls {
            None => args.extend(["--port", &port]),
            Some(_) => args.extend([
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                &files[0],
                "--tls-key-file",
                &files[1],
                "--tls-auth-clients",
                "no",
            ]),
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (Debian package redis-server) is required: scripts/test installs it");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut connection) = self.connection().await {
                if redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok() {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not answer within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills it (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        tierwise::upstream::install_crypto_provider();
        let client = match &self.tls {
            None => redis::Client::open(self.url())?,
            Some(_) => {
                let root_cert = Some(std::fs::read(self.ca_file()).unwrap());
                redis::Client::build_with_tls(self.url(), redis::TlsCertificates { client_tls: None, root_cert })?
            }
        };
        client.get_multiplexed_async_connection().await
    }
}

/// A TCP proxy on 127.0.0.1:0 to `target` that holds every chunk for the current delay
/// before passing it on, both ways.
pub struct SlowProxy {
    pub addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl SlowProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let delay = delay.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        () = pipe(client_read, server_write, delay.clone()) => {}
                        () = pipe(server_read, client_write, delay) => {}
                    }
                });
            }
        });
        SlowProxy { addr, delay_ms, accept }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst))).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
