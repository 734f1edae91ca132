//! A loopback relay in front of the S3 server, for interleavings inside one storage call: a
//! storage whose endpoint is the relay has its requests logged, and one matching a rule is held
//! until the rule's hook has run (another client's work, a late request completing). A storage
//! call makes its requests one after another, so holding one also says the earlier ones are
//! answered. It can also drop a request header on the way ([`Relay::drop_header`]): in front
//! of a server that checks no signatures (moto's), that stands in for a server ignoring the
//! header. Request bodies must carry a `Content-Length` (object_store's always do); answers
//! are relayed as they come.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A request as the relay saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent (`/bucket/registry/blobs/sha256/<hex>?uploadId=...`).
    pub target: String,
    /// A CopyObject's source (`x-amz-copy-source`).
    pub copy_source: Option<String>,
}

impl Seen {
    /// Whether this request names the object whose key ends with `key` (any query).
    pub fn is_on(&self, key: &str) -> bool {
        self.target.split('?').next().unwrap_or("").ends_with(key)
    }

    /// A request that stores an object: PUT (a CopyObject too), or a multipart completion.
    pub fn writes(&self) -> bool {
        (self.method == "PUT" && !self.target.contains("partNumber="))
            || (self.method == "POST" && self.target.contains("uploadId="))
    }
}

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;
/// Whether to hold a request, given it and the requests before it.
type Matcher = Box<dyn Fn(&Seen, &[Seen]) -> bool + Send>;

/// Holds the first request for which `when` (given it and the requests before it) is true
/// until `hook` has run; then the rule is spent.
struct Rule {
    when: Matcher,
    hook: Hook,
}

#[derive(Clone)]
pub struct Relay {
    /// `http://127.0.0.1:<port>`, for a storage's endpoint.
    pub endpoint: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    log: Arc<Mutex<Vec<Seen>>>,
    /// Request headers (lowercase names) not passed on.
    dropped_headers: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    /// Relays to `upstream` (`http://127.0.0.1:<port>`) until the test ends.
    pub async fn start(upstream: &str) -> Relay {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("a plain http endpoint")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let relay = Relay {
            endpoint,
            rules: Arc::default(),
            log: Arc::default(),
            dropped_headers: Arc::default(),
        };
        let serving = relay.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (relay, upstream) = (serving.clone(), upstream.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        relay.connection(client, server).await;
                    }
                });
            }
        });
        relay
    }

    /// Holds the first request matching `when` until `hook` has run.
    pub fn hold(
        &self,
        when: impl Fn(&Seen, &[Seen]) -> bool + Send + 'static,
        hook: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static,
    ) {
        self.rules.lock().expect("rules").push(Rule {
            when: Box::new(when),
            hook: Box::new(hook),
        });
    }

    /// Drops the request header `name` from every request from now on.
    pub fn drop_header(&self, name: &str) {
        self.dropped_headers
            .lock()
            .expect("dropped headers")
            .push(name.to_ascii_lowercase());
    }

    /// Rules not spent yet.
    pub fn pending(&self) -> usize {
        self.rules.lock().expect("rules").len()
    }

    /// The requests seen so far, and forgets them.
    pub fn take_log(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().expect("log"))
    }

    async fn connection(&self, client: TcpStream, server: TcpStream) {
        let (client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            let _ = client_write.shutdown().await;
        });
        let mut client_read = BufReader::new(client_read);
        loop {
            let mut head = Vec::new();
            loop {
                let before = head.len();
                match client_read.read_until(b'\n', &mut head).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if head[before..] == *b"\r\n" {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let mut lines = text.split("\r\n");
            let mut request_line = lines.next().unwrap_or("").split(' ');
            let method = request_line.next().unwrap_or("").to_string();
            let target = request_line.next().unwrap_or("").to_string();
            let mut body_len = 0u64;
            let mut copy_source = None;
            for line in lines {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                match name.as_str() {
                    "content-length" => body_len = value.parse().expect("Content-Length"),
                    "transfer-encoding" => panic!("the relay needs a Content-Length: {text}"),
                    "x-amz-copy-source" => copy_source = Some(value.to_string()),
                    _ => {}
                }
            }
            let seen = Seen {
                method,
                target,
                copy_source,
            };
            let hook = {
                let mut log = self.log.lock().expect("log");
                let mut rules = self.rules.lock().expect("rules");
                let matched = rules.iter().position(|rule| (rule.when)(&seen, &log));
                log.push(seen);
                matched.map(|i| rules.remove(i).hook)
            };
            if let Some(hook) = hook {
                hook().await;
            }
            let head = {
                let dropped = self.dropped_headers.lock().expect("dropped headers");
                if dropped.is_empty() {
                    head
                } else {
                    // The bytes as received, less the dropped lines (not a lossy re-encoding).
                    head.split_inclusive(|&b| b == b'\n')
                        .filter(|line| {
                            let name = line.split(|&b| b == b':').next().unwrap_or_default();
                            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
                            !dropped.contains(&name)
                        })
                        .flatten()
                        .copied()
                        .collect()
                }
            };
            if server_write.write_all(&head).await.is_err() {
                return;
            }
            let mut body = (&mut client_read).take(body_len);
            match tokio::io::copy(&mut body, &mut server_write).await {
                Ok(n) if n == body_len => {}
                _ => return,
            }
        }
    }
}
