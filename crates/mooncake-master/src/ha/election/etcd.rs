//! The election against etcd: the leader key is created by a transaction
//! `if create_revision(key) == 0 then put(key, addr, lease)`, standbys watch it from
//! the revision they read, readiness keys live under `standby_ready/`.
//!
//! etcd members are used one at a time: a client given every endpoint balances
//! requests over them and keeps sending some to a dead member (each such request
//! fails, and a campaign needs several in a row), so instead each connection goes to
//! one member and any error moves on to the next one ([`Election::rotate`]). Every
//! request is bounded.

use super::{view_key, Campaign, Election, ElectionResult, Holder, Watched};
use crate::ha::ready::ready_prefix;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions,
};
use std::time::Duration;

/// Bound on every single etcd request.
const ETCD_TIMEOUT: Duration = Duration::from_secs(2);

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> ElectionResult<T> {
    match tokio::time::timeout(ETCD_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("etcd {what}: {e}")),
        Err(_) => Err(format!("etcd {what}: no answer within {ETCD_TIMEOUT:?}")),
    }
}

async fn connect(endpoint: &str) -> ElectionResult<Client> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(ETCD_TIMEOUT)
        .with_timeout(ETCD_TIMEOUT);
    bounded("connect", Client::connect([endpoint], Some(opts))).await
}

/// The election of one master against an etcd cluster. Each task (the election, the
/// readiness key) uses its own value, hence its own connection.
pub struct EtcdElection {
    endpoints: Vec<String>,
    /// The member in use.
    at: usize,
    /// The connection to it, opened on first use after a rotation.
    client: Option<Client>,
    /// The keep-alive streams of one lease, opened on its first keep-alive.
    streams: Option<(i64, LeaseKeeper, LeaseKeepAliveStream)>,
    key: String,
    ready_prefix: String,
    /// This master's address: the leader key's value when it wins, and its readiness.
    advertised: String,
}

impl EtcdElection {
    pub fn new(endpoints: &[String], cluster_id: &str, advertised: &str) -> Self {
        Self {
            endpoints: endpoints.to_vec(),
            at: 0,
            client: None,
            streams: None,
            key: view_key(cluster_id),
            ready_prefix: ready_prefix(cluster_id),
            advertised: advertised.into(),
        }
    }
}

/// The connection to the member in use, opened if needed.
async fn connected<'a>(
    client: &'a mut Option<Client>,
    endpoints: &[String],
    at: usize,
) -> ElectionResult<&'a mut Client> {
    if client.is_none() {
        let ep = endpoints.get(at).ok_or("no etcd endpoints")?;
        *client = Some(connect(ep).await?);
    }
    Ok(client.as_mut().expect("connected above"))
}

impl EtcdElection {
    async fn client(&mut self) -> ElectionResult<&mut Client> {
        connected(&mut self.client, &self.endpoints, self.at).await
    }
}

impl Election for EtcdElection {
    async fn holder(&mut self) -> ElectionResult<Option<Holder>> {
        let key = self.key.clone();
        let c = self.client().await?;
        let got = bounded("get", c.get(key, None)).await?;
        let revision = got.header().map_or(0, |h| h.revision());
        Ok(got.kvs().first().map(|kv| Holder {
            addr: String::from_utf8_lossy(kv.value()).into_owned(),
            revision,
        }))
    }

    async fn wait_for_delete(
        &mut self,
        revision: i64,
        within: Duration,
    ) -> ElectionResult<Watched> {
        let key = self.key.clone();
        let c = self.client().await?;
        // From just after the revision read, so a delete between the read and the
        // watch is still seen (else the wait would last until the next read).
        let opts = WatchOptions::new().with_start_revision(revision + 1);
        let mut watch = bounded("watch", c.watch(key, Some(opts))).await?;
        let deleted = tokio::time::timeout(within, async {
            while let Ok(Some(resp)) = watch.message().await {
                if resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    return true;
                }
            }
            false
        })
        .await;
        Ok(match deleted {
            Ok(true) => Watched::Deleted,
            Ok(false) => Watched::Ended,
            Err(_) => Watched::Quiet,
        })
    }

    async fn ready(&mut self) -> ElectionResult<Vec<String>> {
        let prefix = self.ready_prefix.clone();
        let c = self.client().await?;
        let got = bounded("get", c.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
        Ok(got
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .collect())
    }

    async fn campaign(&mut self, ttl: Duration) -> ElectionResult<Campaign> {
        let txn_key = self.key.clone();
        let value = self.advertised.clone();
        let c = self.client().await?;
        let lease = bounded(
            "lease grant",
            c.lease_grant(ttl.as_secs().max(1) as i64, None),
        )
        .await?;
        let granted = Duration::from_secs(lease.ttl().max(0) as u64);
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                txn_key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                txn_key.as_str(),
                value,
                Some(PutOptions::new().with_lease(lease.id())),
            )]);
        let won = bounded("campaign", c.txn(txn)).await?.succeeded();
        Ok(Campaign {
            lease: lease.id(),
            granted,
            won,
        })
    }

    /// One round trip on the lease's keep-alive stream (opened first if needed),
    /// bounded by `within`; a failed one drops the stream.
    async fn keep_alive(&mut self, lease: i64, within: Duration) -> ElectionResult<i64> {
        let c = connected(&mut self.client, &self.endpoints, self.at).await?;
        if self.streams.as_ref().is_some_and(|(l, _, _)| *l != lease) {
            self.streams = None;
        }
        let streams = &mut self.streams;
        let attempt = async {
            if streams.is_none() {
                let (keeper, stream) = c
                    .lease_keep_alive(lease)
                    .await
                    .map_err(|e| format!("etcd keep-alive: {e}"))?;
                *streams = Some((lease, keeper, stream));
            }
            let (_, keeper, stream) = streams.as_mut().expect("opened above");
            keeper
                .keep_alive()
                .await
                .map_err(|e| format!("etcd keep-alive: {e}"))?;
            match stream.message().await {
                Ok(Some(r)) => Ok(r.ttl()),
                Ok(None) => Err("etcd keep-alive: the stream closed".to_string()),
                Err(e) => Err(format!("etcd keep-alive: {e}")),
            }
        };
        let r = tokio::time::timeout(within, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("etcd keep-alive: no answer within {within:?}")));
        if r.is_err() {
            self.streams = None;
        }
        r
    }

    async fn revoke(&mut self, lease: i64) -> ElectionResult<()> {
        if self.streams.as_ref().is_some_and(|(l, _, _)| *l == lease) {
            self.streams = None;
        }
        let c = self.client().await?;
        bounded("lease revoke", c.lease_revoke(lease))
            .await
            .map(|_| ())
    }

    /// Each member in turn, on a fresh connection, until one takes the revoke (the
    /// one in use may be the reason the master is stopping).
    async fn revoke_on_exit(&mut self, lease: i64) -> ElectionResult<()> {
        self.streams = None;
        let mut r = Err("no etcd endpoints".to_string());
        for ep in &self.endpoints {
            r = match connect(ep).await {
                Ok(mut c) => bounded("lease revoke", c.lease_revoke(lease))
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if r.is_ok() {
                break;
            }
        }
        r
    }

    /// Each member in turn from the first, on a fresh connection, until one grants
    /// the lease and takes the key; that member is used from then on.
    async fn put_ready(&mut self, ttl: Duration) -> ElectionResult<i64> {
        let key = format!("{}{}", self.ready_prefix, self.advertised);
        let value = self.advertised.clone();
        let mut last = "no etcd endpoints".to_string();
        for (i, ep) in self.endpoints.iter().enumerate() {
            let mut c = match connect(ep).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let attempt = async {
                let lease = bounded(
                    "lease grant",
                    c.lease_grant(ttl.as_secs().max(1) as i64, None),
                )
                .await?
                .id();
                let opts = PutOptions::new().with_lease(lease);
                bounded("put", c.put(key.as_str(), value.as_str(), Some(opts))).await?;
                Ok::<_, String>(lease)
            };
            match attempt.await {
                Ok(lease) => {
                    self.client = Some(c);
                    self.streams = None;
                    self.at = i;
                    return Ok(lease);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn rotate(&mut self) -> bool {
        self.client = None;
        self.streams = None;
        self.at = (self.at + 1) % self.endpoints.len().max(1);
        self.at == 0
    }
}
