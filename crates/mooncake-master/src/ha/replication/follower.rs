//! The standby's follower task: while another master leads, connect to it (its
//! address comes from the election's watch of the leader key), receive the snapshot
//! into a fresh shadow, install it once complete, then apply the op stream and
//! acknowledge every batch. When this process wins, the election takes the shadow
//! (`StandbyShadow::take_for_takeover`) and the task idles until it is a standby
//! again, when it follows the new leader from a new snapshot.

use super::leader::MAX_MESSAGE;
use super::shadow::Shadow;
use crate::ha::state::HaState;
use mooncake_common::auth::{random_bytes, Challenge, TokenSet, CLUSTER_TENANT};
use mooncake_proto::auth_client::AuthClient;
use mooncake_proto::handshake::{NONCE_LEN, PURPOSE};
use mooncake_proto::master_replication_client::MasterReplicationClient;
use mooncake_proto::{AuthenticateRequest, ChallengeRequest, FollowAck};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// Pause between attempts (no leader known, connection refused, stream broke).
const RETRY: Duration = Duration::from_millis(200);

/// Follows the leader until `shutdown` resolves.
pub async fn run(state: Arc<HaState>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::select! {
        _ = follow_forever(&state) => {}
        _ = shutdown => {}
    }
}

async fn follow_forever(state: &HaState) {
    let mut last_error = String::new();
    loop {
        let leader = state.role().leader;
        if state.fence.is_leader_now() || leader.is_empty() || leader == state.advertised {
            tokio::time::sleep(RETRY).await;
            continue;
        }
        let r = follow(state, &leader).await;
        state.shadow.disconnected();
        if let Err(e) = r {
            if e != last_error {
                tracing::info!("HA: following {leader}: {e}");
                last_error = e;
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn follow(state: &HaState, leader: &str) -> Result<(), String> {
    let channel = super::dial::connect(state.config(), leader).await?;
    prove(state, channel.clone()).await?;
    let mut client = MasterReplicationClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::channel::<FollowAck>(64);
    let hello = FollowAck {
        applied_seq: 0,
        follower: state.advertised.clone(),
    };
    let _ = tx.send(hello).await;
    let mut stream = client
        .follow(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("follow: {}", s.message()))?
        .into_inner();
    tracing::info!("HA: following the leader {leader}");
    let mut building = Some(Shadow::default());
    loop {
        let batch = match stream.message().await {
            Ok(Some(b)) => b,
            // The leader ends a stream without a status only when it dropped us while
            // we were not reading (a term that ends says UNAVAILABLE; a dead leader
            // is a transport error): it may acknowledge writes we will never see.
            Ok(None) => {
                state
                    .shadow
                    .invalidate("the leader ended the stream (dropped)");
                return Err("the leader ended the stream".into());
            }
            Err(s) => {
                if s.code() == tonic::Code::Aborted {
                    state.shadow.invalidate(s.message());
                }
                return Err(format!("stream: {}", s.message()));
            }
        };
        if state.fence.is_leader_now() {
            return Ok(());
        }
        let head = batch.head_seq;
        let end = batch.snapshot_end;
        match building.as_mut() {
            Some(b) => {
                b.apply(batch);
                if end {
                    let s = building.take().unwrap_or_default();
                    tracing::info!(
                        objects = s.objects.len(),
                        segments = s.segments.len(),
                        head,
                        "HA: snapshot of the leader applied; standby in sync"
                    );
                    state.shadow.install(s);
                }
            }
            None => state.shadow.apply(batch),
        }
        if building.is_none() || end {
            let ack = FollowAck {
                applied_seq: head,
                follower: String::new(),
            };
            if tx.send(ack).await.is_err() {
                return Err("the acknowledgement stream closed".into());
            }
        }
    }
}

/// With `--auth_token_file`, proves the `cluster` tenant's token on the connection
/// before following: the leader serves its replication stream only to a proven peer,
/// and every master of a group shares the token file. The file is read again at each
/// connection so a rotated token is used at once.
async fn prove(state: &HaState, channel: tonic::transport::Channel) -> Result<(), String> {
    let path = &state.config().auth_token_file;
    if path.is_empty() {
        return Ok(());
    }
    let tokens = TokenSet::load(std::path::Path::new(path)).map_err(|e| e.to_string())?;
    let credential = tokens.credential_for(CLUSTER_TENANT).ok_or_else(|| {
        format!("{path} names no token of the {CLUSTER_TENANT} tenant, which a standby proves to its leader")
    })?;
    let mut auth = AuthClient::new(channel);
    let c = auth
        .challenge(ChallengeRequest {})
        .await
        .map_err(|s| format!("authentication: {}", s.message()))?
        .into_inner();
    if !c.required {
        return Ok(());
    }
    let challenge: [u8; 32] = c
        .challenge
        .as_slice()
        .try_into()
        .map_err(|_| "authentication: the leader's challenge is not 32 bytes".to_string())?;
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let proof = credential.prove(PURPOSE, &Challenge(challenge), &nonce);
    auth.authenticate(AuthenticateRequest {
        peer_nonce: nonce.to_vec(),
        proof: proof.to_vec(),
        tenant_id: CLUSTER_TENANT.to_string(),
    })
    .await
    .map_err(|s| format!("authentication: {}", s.message()))?;
    Ok(())
}
