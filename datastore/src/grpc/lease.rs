//! `etcdserverpb.Lease`: grants and revokes go through Raft; keep-alive and
//! time-to-live are answered by the leader, whose clock owns expiry.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{decode_result, st};
use crate::errors::EtcdError;
use crate::lease::{LeaseTable, MAX_TTL};
use crate::member::{LeaderCall, LeaderReply, Node};
use crate::proto::lease_server::Lease;
use crate::proto::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::raft::Command;

pub struct LeaseService {
    pub node: Arc<Node>,
    pub limits: crate::limits::Limits,
}

async fn keep_alive(node: &Node, id: i64) -> Result<LeaseKeepAliveResponse, EtcdError> {
    match node.leader_call(LeaderCall::KeepAlive(id)).await? {
        LeaderReply::KeepAlive(ttl) => Ok(LeaseKeepAliveResponse {
            header: Some(node.header(node.mvcc.current_rev())),
            id,
            ttl,
        }),
        other => Err(EtcdError::Internal(format!(
            "unexpected leader reply {other:?}"
        ))),
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let r = req.into_inner();
        if r.ttl > MAX_TTL {
            return Err(st(EtcdError::LeaseTtlTooLarge));
        }
        // etcd picks a random positive ID when the client leaves it 0.
        let id = if r.id == 0 {
            (rand::random::<u64>() >> 1).max(1) as i64
        } else {
            r.id
        };
        // etcd's quotaLeaseServer: a grant adds data, so NOSPACE refuses it.
        self.limits
            .check_space(&self.node, crate::alarm::cost(&r))
            .await
            .map_err(st)?;
        let res = self
            .node
            .write(Command::LeaseGrant { id, ttl: r.ttl })
            .await
            .map_err(st)?;
        let mut resp: LeaseGrantResponse = decode_result(res)?;
        self.node.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let r = req.into_inner();
        let res = self
            .node
            .write(Command::LeaseRevoke { id: r.id })
            .await
            .map_err(st)?;
        let mut resp: LeaseRevokeResponse = decode_result(res)?;
        self.node.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = inbound.message().await {
                let resp = keep_alive(&node, r.id).await.map_err(Status::from);
                let stop = resp.is_err();
                if tx.send(resp).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        match self
            .node
            .leader_call(LeaderCall::TimeToLive {
                id: r.id,
                keys: r.keys,
            })
            .await
            .map_err(st)?
        {
            LeaderReply::TimeToLive { ttl, granted, keys } => {
                Ok(Response::new(LeaseTimeToLiveResponse {
                    header: Some(self.node.header(self.node.mvcc.current_rev())),
                    id: r.id,
                    ttl,
                    granted_ttl: granted,
                    keys,
                }))
            }
            other => Err(Status::internal(format!(
                "unexpected leader reply {other:?}"
            ))),
        }
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = LeaseTable(&self.node.mvcc).all().map_err(st)?;
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.node.header(self.node.mvcc.current_rev())),
            leases: leases
                .into_iter()
                .map(|(id, _)| LeaseStatus { id })
                .collect(),
        }))
    }
}
